"""Tests of the batched augmentation: shapes, label handling, geometry, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from selfconfig.augment import AugmentationConfig, BatchAugmenter, default_augmentation_config
from selfconfig.augment import intensity, spatial
from selfconfig.errors import ConfigurationError

SHAPES = {2: (3, 2, 24, 20), 3: (2, 1, 12, 16, 20)}
INTENSITY = ("noise", "blur", "brightness", "contrast", "lowres", "gamma")


def _config(dim: int, only: tuple[str, ...] = (), **overrides) -> AugmentationConfig:
    """Config for ``dim`` with only the transforms in ``only`` enabled."""
    d = default_augmentation_config(dim).all_disabled().to_dict()
    for name in only:
        d[f"{name}_enabled"] = True
    d.update(overrides)
    return AugmentationConfig.from_dict(d)


def _always(dim: int) -> AugmentationConfig:
    """Every transform enabled and forced on for every sample and channel."""
    ones = {f.name: 1.0 for f in AugmentationConfig.__dataclass_fields__.values()
            if f.name.startswith("p_")}
    return _config(dim, ("spatial", "mirror") + INTENSITY, **ones)


def _batch(dim: int, seed: int = 0, labels: int = 3, seg_dtype=torch.long):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[dim]
    data = torch.randn(shape, generator=g)
    seg = torch.randint(0, labels, (shape[0], 1) + shape[2:], generator=g).to(seg_dtype)
    return data, seg


def _aug(cfg: AugmentationConfig, seed: int = 0) -> BatchAugmenter:
    return BatchAugmenter(cfg, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("seg_dtype", [torch.long, torch.uint8, None])
@pytest.mark.parametrize("which", ["default", "always"])
def test_shapes_dtypes_devices_preserved(dim, seg_dtype, which):
    data, seg = _batch(dim, seg_dtype=seg_dtype or torch.long)
    if seg_dtype is None:
        seg = None
    cfg = default_augmentation_config(dim) if which == "default" else _always(dim)
    data_in = data.clone()
    seg_in = None if seg is None else seg.clone()
    out, out_seg = _aug(cfg)(data, seg)
    assert out.shape == data.shape and out.dtype == data.dtype and out.device == data.device
    assert torch.isfinite(out).all()
    if seg is None:
        assert out_seg is None
    else:
        assert out_seg.shape == seg.shape and out_seg.dtype == seg.dtype
    # inputs are never modified
    assert torch.equal(data, data_in)
    if seg is not None:
        assert torch.equal(seg, seg_in)
    if which == "always":
        assert not torch.allclose(out, data)


@pytest.mark.parametrize("dim", [2, 3])
def test_float64_data_kept(dim):
    data, seg = _batch(dim)
    out, _ = _aug(_always(dim))(data.double(), seg)
    assert out.dtype == torch.float64


@pytest.mark.parametrize("dim", [2, 3])
def test_seg_values_stay_in_label_set(dim):
    data, seg = _batch(dim, labels=4)
    seg[seg == 2] = 7  # labels {0, 1, 3, 7}: linear interpolation would create 2, 4, 5 ...
    cfg = _config(dim, ("spatial", "mirror"), p_rotation=1.0, p_scaling=1.0,
                  rotation_range_deg=(-40.0, 40.0))
    _, out_seg = _aug(cfg)(data, seg)
    assert set(out_seg.unique().tolist()) <= {0, 1, 3, 7}
    assert not torch.equal(out_seg, seg)


@pytest.mark.parametrize("dim", [2, 3])
def test_mirroring_all_axes_flips_data_and_seg(dim):
    data, seg = _batch(dim)
    cfg = _config(dim, ("mirror",), p_mirror_per_axis=1.0)
    out, out_seg = _aug(cfg)(data, seg)
    dims = list(range(2, 2 + dim))
    assert torch.equal(out, data.flip(dims))
    assert torch.equal(out_seg, seg.flip(dims))


def test_mirroring_only_configured_axes():
    data, seg = _batch(3)
    cfg = _config(3, ("mirror",), p_mirror_per_axis=1.0, mirror_axes=(1,))
    out, out_seg = _aug(cfg)(data, seg)
    assert torch.equal(out, data.flip(3)) and torch.equal(out_seg, seg.flip(3))


@pytest.mark.parametrize("dim", [2, 3])
def test_random_mirroring_keeps_data_and_seg_consistent(dim):
    # seg is a function of the data; any flip that misses one of the two breaks it
    data = torch.randn((8, 1) + SHAPES[dim][2:], generator=torch.Generator().manual_seed(3))
    seg = (data > 0.3).to(torch.uint8)
    out, out_seg = _aug(_config(dim, ("mirror",)), seed=5)(data, seg)
    assert torch.equal(out_seg, (out > 0.3).to(torch.uint8))
    assert not torch.equal(out, data)  # with 8 samples and p=0.5 per axis some were flipped


@pytest.mark.parametrize("dim", [2, 3])
def test_identity_spatial_parameters_reproduce_input(dim):
    data, seg = _batch(dim)
    cfg = _config(dim, ("spatial",), p_rotation=1.0, p_scaling=1.0,
                  rotation_range_deg=(0.0, 0.0), scaling_range=(1.0, 1.0))
    out, out_seg = _aug(cfg)(data, seg)
    torch.testing.assert_close(out, data, atol=1e-5, rtol=0)
    assert torch.equal(out_seg, seg)


def _rotation_config(dim: int, degrees: float, **kw) -> AugmentationConfig:
    return _config(dim, ("spatial",), p_rotation=1.0, p_scaling=0.0,
                   rotation_range_deg=(degrees, degrees), **kw)


def test_rotation_90_degrees_2d_matches_rot90():
    data, seg = _batch(2)
    data, seg = data[..., :20, :20], seg[..., :20, :20]  # square, so rot90 fits the canvas
    out, out_seg = _aug(_rotation_config(2, 90.0))(data, seg)
    torch.testing.assert_close(out, torch.rot90(data, 1, dims=(2, 3)), atol=1e-4, rtol=0)
    assert torch.equal(out_seg, torch.rot90(seg, 1, dims=(2, 3)))


def test_rotation_non_square_2d_is_rigid_in_voxels():
    # a 12 x 8 image rotated by 90 degrees: the centre 8 x 8 block is rot90's centre block,
    # and the rest comes from outside the image (zeros); a rotation done in normalised [-1, 1]
    # coordinates would stretch the content instead
    data = torch.arange(96, dtype=torch.float32).reshape(1, 1, 12, 8) + 1
    out, _ = _aug(_rotation_config(2, 90.0))(data)
    expected = torch.rot90(data, 1, dims=(2, 3))[..., 2:10]
    torch.testing.assert_close(out[..., 2:10, :], expected, atol=1e-3, rtol=0)
    assert torch.all(out[..., :2, :] == 0) and torch.all(out[..., 10:, :] == 0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rotation_90_degrees_3d_in_plane_axis(axis):
    data = torch.randn(2, 2, 10, 10, 10, generator=torch.Generator().manual_seed(1))
    seg = (data[:, :1] > 0).long()
    cfg = _rotation_config(3, 90.0, rotation_in_plane_only=True, through_plane_axis=axis)
    out, out_seg = _aug(cfg)(data, seg)
    plane = tuple(a + 2 for a in range(3) if a != axis)
    torch.testing.assert_close(out, torch.rot90(data, 1, dims=plane), atol=1e-4, rtol=0)
    assert torch.equal(out_seg, torch.rot90(seg, 1, dims=plane))


def test_scaling_zooms_content():
    # a centred bright square grows with a content zoom > 1
    data = torch.zeros(1, 1, 32, 32)
    data[..., 12:20, 12:20] = 1.0
    cfg = _config(2, ("spatial",), p_rotation=0.0, p_scaling=1.0, scaling_range=(1.5, 1.5))
    out, _ = _aug(cfg)(data)
    assert (out > 0.5).sum() > 1.8 * (data > 0.5).sum()


def test_border_mode_min_fills_with_minimum():
    data = torch.rand(2, 2, 16, 16) + 5.0
    cfg = _config(2, ("spatial",), p_rotation=0.0, p_scaling=1.0, scaling_range=(0.5, 0.5),
                  border_mode_data="min")
    out, _ = _aug(cfg)(data)
    corner = out[..., 0, 0]
    torch.testing.assert_close(corner, data.amin(dim=(2, 3)))


def test_only_selected_samples_are_resampled():
    data, seg = _batch(2)
    data = torch.cat([data] * 4)  # 12 samples
    seg = torch.cat([seg] * 4)
    cfg = _config(2, ("spatial",), p_rotation=0.5, p_scaling=0.0)
    out, out_seg = _aug(cfg, seed=2)(data, seg)
    same = [torch.equal(out[i], data[i]) for i in range(len(data))]
    assert any(same) and not all(same)
    for i, s in enumerate(same):
        if s:
            assert torch.equal(out_seg[i], seg[i])


@pytest.mark.parametrize("dim", [2, 3])
def test_same_seed_same_output_and_state_dict_resumes(dim):
    data, seg = _batch(dim)
    cfg = default_augmentation_config(dim)
    cfg = AugmentationConfig.from_dict({**cfg.to_dict(), "p_rotation": 0.7, "p_noise": 0.7,
                                        "p_blur": 0.7, "p_lowres": 0.7})
    a, b = _aug(cfg, seed=11), _aug(cfg, seed=11)
    for _ in range(3):
        out_a, seg_a = a(data, seg)
        out_b, seg_b = b(data, seg)
        assert torch.equal(out_a, out_b) and torch.equal(seg_a, seg_b)
    # resume: a fresh augmenter loaded with a's state continues exactly like a
    state = a.state_dict()
    c = _aug(cfg, seed=999)
    c.load_state_dict(state)
    out_a, seg_a = a(data, seg)
    out_c, seg_c = c(data, seg)
    assert torch.equal(out_a, out_c) and torch.equal(seg_a, seg_c)
    # and another seed gives something else
    out_d, _ = _aug(_always(dim), seed=12)(data, seg)
    out_e, _ = _aug(_always(dim), seed=13)(data, seg)
    assert not torch.equal(out_d, out_e)


def test_state_dict_survives_weights_only_torch_load(tmp_path):
    aug = _aug(default_augmentation_config(2), seed=4)
    torch.save(aug.state_dict(), tmp_path / "aug.pt")
    other = _aug(default_augmentation_config(2), seed=5)
    other.load_state_dict(torch.load(tmp_path / "aug.pt", weights_only=True))
    data, seg = _batch(2)
    assert torch.equal(aug(data, seg)[0], other(data, seg)[0])


@pytest.mark.parametrize("dim", [2, 3])
def test_intensity_transforms_leave_seg_untouched(dim):
    data, seg = _batch(dim)
    ones = {f"p_{n}": 1.0 for n in ("noise", "blur", "brightness", "contrast", "lowres",
                                    "gamma", "gamma_inverted", "blur_per_channel",
                                    "lowres_per_channel")}
    out, out_seg = _aug(_config(dim, INTENSITY, **ones))(data, seg)
    assert not torch.allclose(out, data)
    assert torch.equal(out_seg, seg)


@pytest.mark.parametrize("dim", [2, 3])
def test_probability_zero_is_identity(dim):
    data, seg = _batch(dim)
    zeros = {f.name: 0.0 for f in AugmentationConfig.__dataclass_fields__.values()
             if f.name.startswith("p_")}
    cfg = AugmentationConfig.from_dict({**default_augmentation_config(dim).to_dict(), **zeros})
    out, out_seg = _aug(cfg)(data, seg)
    assert torch.equal(out, data) and torch.equal(out_seg, seg)
    out, out_seg = _aug(default_augmentation_config(dim).all_disabled())(data, None)
    assert torch.equal(out, data) and out_seg is None


# ---------------------------------------------------------------- single intensity transforms


def test_blur_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(3, 9, 11, 13, generator=gen, dtype=torch.float64)
    sigma = torch.tensor([[1.0, 0.5, 0.6], [1.0, 0.5, 0.6], [1.0, 0.5, 0.6]])
    out = intensity.gaussian_blur(rows.clone(), sigma)
    for r in range(3):
        ref = gaussian_filter(rows[r].numpy(), sigma=(1.0, 0.5, 0.6), mode="reflect", truncate=3.0)
        np.testing.assert_allclose(out[r].numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("shape", [(16, 20), (6, 16, 20)])
def test_low_resolution_matches_per_row_interpolate(shape):
    rows = torch.randn((4,) + shape, generator=torch.Generator().manual_seed(0))
    zoom = torch.tensor([0.5, 0.63, 0.8, 1.0])
    out = intensity.simulate_low_resolution(rows.clone(), zoom)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    for r in range(4):
        small = [max(1, round(s * float(zoom[r]))) for s in shape]
        down = F.interpolate(rows[r][None, None], size=small, mode="nearest-exact")
        ref = F.interpolate(down, size=shape, mode=mode, align_corners=False)[0, 0]
        torch.testing.assert_close(out[r], ref, atol=1e-5, rtol=0)
    assert not torch.allclose(out[0], rows[0])


def test_low_resolution_ignores_axes():
    rows = torch.randn(2, 6, 16, 16, generator=torch.Generator().manual_seed(0))
    out = intensity.simulate_low_resolution(rows.clone(), torch.tensor([0.5, 0.5]),
                                            ignore_axes=(1, 2))
    ref = F.interpolate(F.interpolate(rows[:, None], size=(3, 16, 16), mode="nearest-exact"),
                        size=(6, 16, 16), mode="trilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("invert", [False, True])
def test_gamma_preserves_range_or_stats(invert):
    gen = torch.Generator().manual_seed(0)
    rows = torch.rand(3, 8, 8, generator=gen, dtype=torch.float64) * 4 - 1
    gamma = torch.tensor([0.7, 1.0, 1.5])
    out = intensity.adjust_gamma(rows.clone(), gamma, invert=invert, retain_stats=False)
    torch.testing.assert_close(out.amin(dim=(1, 2)), rows.amin(dim=(1, 2)))
    torch.testing.assert_close(out.amax(dim=(1, 2)), rows.amax(dim=(1, 2)))
    torch.testing.assert_close(out[1], rows[1])
    assert not torch.allclose(out[2], rows[2])
    # inverted gamma > 1 brightens (mean up), plain gamma > 1 darkens (mean down)
    assert (out[2].mean() > rows[2].mean()) == invert
    kept = intensity.adjust_gamma(rows.clone(), gamma, invert=invert, retain_stats=True)
    torch.testing.assert_close(kept.mean(dim=(1, 2)), rows.mean(dim=(1, 2)))
    torch.testing.assert_close(kept.std(dim=(1, 2)), rows.std(dim=(1, 2)))


def test_contrast_brightness_noise():
    rows = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0))
    out = intensity.adjust_contrast(rows.clone(), torch.tensor([1.25, 0.75]))
    assert out.amin() >= rows.amin() and out.amax() <= rows.amax()
    torch.testing.assert_close(out[1].mean(), rows[1].mean(), atol=1e-5, rtol=0)
    assert out[1].std() < rows[1].std() and out[0].std() > rows[0].std()
    out = intensity.multiply_brightness(rows.clone(), torch.tensor([1.2, 0.8]))
    torch.testing.assert_close(out, rows * torch.tensor([1.2, 0.8]).reshape(2, 1, 1))
    gen = torch.Generator().manual_seed(0)
    out = intensity.add_gaussian_noise(torch.zeros(2, 64, 64), torch.tensor([0.0, 0.1]), gen)
    assert torch.equal(out[0], torch.zeros(64, 64))
    assert 0.09 < float(out[1].std()) < 0.11


# ---------------------------------------------------------------- configuration


def test_config_json_round_trip_and_defaults():
    for dim, aniso in ((2, False), (3, False), (3, True)):
        cfg = default_augmentation_config(dim, aniso)
        again = AugmentationConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg
    assert default_augmentation_config(2, False).mirror_axes == (0, 1)
    assert default_augmentation_config(3, False).rotation_range_deg == (-30.0, 30.0)
    aniso = default_augmentation_config(3, True)
    assert aniso.rotation_in_plane_only and aniso.lowres_ignore_axes == (0,)


def test_anisotropic_rotation_stays_in_plane():
    # with in-plane rotation only, every z slice of the output comes from the same z slice
    data = torch.zeros(4, 1, 6, 16, 16)
    data[:, :, 2] = 1.0
    cfg = _config(3, ("spatial",), p_rotation=1.0, p_scaling=0.0,
                  rotation_range_deg=(-180.0, 180.0), rotation_in_plane_only=True)
    out, _ = _aug(cfg)(data)
    assert torch.all(out[:, :, [0, 1, 3, 4, 5]] == 0)
    assert out[:, :, 2].sum() > 0


@pytest.mark.parametrize("bad", [{"p_noise": 1.5}, {"scaling_range": [1.4, 0.7]},
                                 {"mirror_axes": [3]}, {"border_mode_data": "edge"},
                                 {"no_such_field": 1}, {"gamma_range": [0.0, 1.5]},
                                 {"mirror_axes": [0, 0]}, {"p_blur": "0.2"}])
def test_bad_config_raises_configuration_error(bad):
    with pytest.raises(ConfigurationError):
        AugmentationConfig.from_dict({**default_augmentation_config(3).to_dict(), **bad})


def test_3d_mirror_axes_on_2d_batch_is_a_configuration_error():
    data, _ = _batch(2)
    with pytest.raises(ConfigurationError, match="mirror_axes"):
        _aug(default_augmentation_config(3))(data)


def test_bad_inputs_raise():
    aug = _aug(default_augmentation_config(2))
    data, seg = _batch(2)
    with pytest.raises(TypeError):
        aug(data.long())
    with pytest.raises(TypeError):
        aug(data, seg.float())
    with pytest.raises(ValueError):
        aug(data, seg[..., :5])
    with pytest.raises(ValueError):
        aug(data[0])


@pytest.mark.parametrize("shape", [(5, 7), (3, 5, 7)])
def test_linear_grid_equals_affine_grid(shape):
    d = len(shape)
    matrix = torch.randn(2, d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = torch.cat([matrix, torch.zeros(2, d, 1, dtype=torch.float64)], dim=2).float()
    ref = F.affine_grid(theta, [2, 1, *shape], align_corners=False)
    out = spatial.linear_grid(matrix, shape, torch.device("cpu"))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- larger crop, no invented background
def _spatial_only(dim, rot=(-180.0, 180.0), scale=(0.7, 1.4), **kw):
    cfg = default_augmentation_config(dim).all_disabled()
    cfg.spatial_enabled = True
    cfg.p_rotation = 1.0
    cfg.p_scaling = 1.0
    cfg.rotation_range_deg = rot
    cfg.scaling_range = scale
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.parametrize("dim, rot, kw", [(2, (-180.0, 180.0), {}), (3, (-30.0, 30.0), {}),
                                          (3, (-180.0, 180.0), {"rotation_in_plane_only": True})])
def test_rotation_and_zoom_out_invent_no_background(dim, rot, kw):
    """An all-foreground input cropped at input_patch_size(): after rotation and the strongest
    zoom-out, every output voxel still comes from the data (no zeros, no label 0)."""
    patch = (24, 32) if dim == 2 else (12, 20, 16)
    aug = BatchAugmenter(_spatial_only(dim, rot, (0.7, 0.7001), **kw), torch.Generator().manual_seed(3),
                         patch_size=patch)
    crop = aug.input_patch_size()
    assert all(c >= p and (c - p) % 2 == 0 for c, p in zip(crop, patch))
    data = torch.rand(6, 1, *crop) + 1.0  # in [1, 2]: a padded voxel would read 0
    seg = torch.full((6, 1, *crop), 3, dtype=torch.uint8)
    out, out_seg = aug(data, seg)
    assert tuple(out.shape[2:]) == patch and tuple(out_seg.shape[2:]) == patch
    assert float(out.min()) >= 0.999 and int(out_seg.min()) == 3
    # the same transform on the final patch alone (the former behaviour) pads with background
    plain = BatchAugmenter(_spatial_only(dim, rot, (0.7, 0.7001), **kw), torch.Generator().manual_seed(3))
    _, small_seg = plain(data[(...,) + tuple(slice(0, p) for p in patch)].contiguous(),
                         seg[(...,) + tuple(slice(0, p) for p in patch)].contiguous())
    assert int((small_seg == 0).sum()) > 0


def test_unrotated_samples_are_centre_crops():
    aug = BatchAugmenter(default_augmentation_config(2).all_disabled(), patch_size=(8, 10))
    data = torch.arange(2 * 1 * 12 * 16, dtype=torch.float32).reshape(2, 1, 12, 16)
    seg = (data % 5).to(torch.uint8)
    out, out_seg = aug(data, seg)
    assert torch.equal(out, data[:, :, 2:10, 3:13]) and torch.equal(out_seg, seg[:, :, 2:10, 3:13])
    with pytest.raises(ValueError):
        BatchAugmenter(default_augmentation_config(2), patch_size=(20, 10))(data, seg)


def test_input_patch_size_follows_the_configured_ranges():
    cfg = default_augmentation_config(2)
    assert BatchAugmenter(cfg.all_disabled(), patch_size=(32, 32)).input_patch_size() == [32, 32]
    # +-180 degrees and zoom 0.7: the diagonal over the smallest zoom
    full = BatchAugmenter(cfg, patch_size=(32, 32)).input_patch_size()
    assert all(abs(c - 32 * 2 ** 0.5 / 0.7) <= 2 for c in full)
    # in-plane rotation of a 3D patch leaves the through-plane axis at its size / zoom
    aniso = BatchAugmenter(default_augmentation_config(3, anisotropic=True), patch_size=(8, 32, 32))
    z, y, x = aniso.input_patch_size()
    assert z <= 8 / 0.7 + 2 and y > 32 * 1.9


def test_sampler_reaches_the_borders_with_a_larger_crop(tmp_path):
    """With the margin of a larger crop, the final patch still starts anywhere on the case."""
    from selfconfig.data.sampler import PatchSampler

    s = PatchSampler.__new__(PatchSampler)
    s.patch, s.final, s.margin, s.random_crop = [20], [12], [4], True
    rng = np.random.default_rng(0)
    starts = {s._start(rng, [30], None)[0] + 4 for _ in range(400)}  # start of the final patch
    assert min(starts) == 0 and max(starts) == 30 - 12
