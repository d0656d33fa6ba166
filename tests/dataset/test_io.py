"""Image I/O: every format round-trips its voxels and geometry; DICOM geometry matches SimpleITK;
user mistakes become one-line ImageReadErrors."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.uid import generate_uid

from selfconfig.dataset.geometry import DUMMY_2D_SPACING, Geometry
from selfconfig.testing import rotation_matrix, write_dicom_slice
from selfconfig.dataset.io import (
    SUPPORTED_ENDINGS,
    is_dicom_folder,
    output_ending_for,
    read_case,
    read_image,
    read_label,
    split_ending,
    write_image,
    write_segmentation,
)
from selfconfig.errors import ImageReadError, SelfconfigError

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CT5N = PYDICOM_FILES / "dicomdirtests" / "98892001" / "CT5N"  # one real CT series, 5 slices


R_OBLIQUE = rotation_matrix(0.2, -0.35, 0.6)
GEOM_OBLIQUE = Geometry(spacing=(2.5, 0.8, 0.6), shape=(4, 6, 5), origin=(10.0, -20.5, 33.0),
                        direction=tuple(R_OBLIQUE.reshape(-1)))


def _sitk_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_geometry_matches_sitk(geometry: Geometry, img: sitk.Image) -> None:
    np.testing.assert_allclose(geometry.spacing, img.GetSpacing()[::-1], atol=1e-4)
    np.testing.assert_allclose(geometry.origin, img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(geometry.direction, img.GetDirection(), atol=1e-4)
    assert tuple(geometry.shape) == tuple(img.GetSize()[::-1])


# ----------------------------------------------------------------------------------- names

@pytest.mark.parametrize("name, expected", [
    ("case_0000.nii.gz", ("case_0000", ".nii.gz")),
    ("case_0000.NII.GZ", ("case_0000", ".NII.GZ")),
    ("a.b_0001.nii", ("a.b_0001", ".nii")),
    ("x.nrrd", ("x", ".nrrd")),
    ("x.mhd", ("x", ".mhd")),
    ("img.tiff", ("img", ".tiff")),
    ("img.jpeg", ("img", ".jpeg")),
    ("notes.txt", ("notes.txt", "")),
    ("case_0000", ("case_0000", "")),
    ("archive.gz", ("archive.gz", "")),
])
def test_split_ending(name, expected):
    assert split_ending(name) == expected


def test_supported_endings_cover_the_formats():
    for e in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        assert e in SUPPORTED_ENDINGS


def test_output_ending_for():
    assert output_ending_for(Geometry((1, 1, 1), (1, 1, 1), source_format="dicom", file_ending="")) == ".nii.gz"
    assert output_ending_for(Geometry((999, 1, 1), (1, 4, 4), dim=2, source_format="image2d", file_ending=".jpg")) == ".png"
    assert output_ending_for(Geometry((999, 1, 1), (1, 4, 4), dim=2, source_format="image2d", file_ending=".JPEG")) == ".png"
    assert output_ending_for(Geometry((999, 1, 1), (1, 4, 4), dim=2, source_format="image2d", file_ending=".tif")) == ".tif"
    assert output_ending_for(Geometry((1, 1, 1), (1, 1, 1), source_format="nrrd", file_ending=".nrrd")) == ".nrrd"
    assert output_ending_for(Geometry((1, 1, 1), (1, 1, 1), file_ending=".nii")) == ".nii"


# -------------------------------------------------------------------------------- 3D formats

@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_nifti_read_and_segmentation_keeps_affine(tmp_path, ending):
    affine = np.eye(4)
    affine[:3, :3] = R_OBLIQUE @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [12.0, -40.0, 7.5]
    data = np.random.default_rng(0).normal(size=(6, 7, 5)).astype(np.float32)  # (x, y, z)
    src = tmp_path / f"case_0000{ending}"
    nib.save(nib.Nifti1Image(data, affine), src)

    image, geom = read_image(src)
    assert image.dtype == np.float32 and image.shape == (1, 5, 7, 6)
    np.testing.assert_allclose(image[0], data.transpose(2, 1, 0))
    assert geom.shape == (5, 7, 6) and geom.dim == 3
    np.testing.assert_allclose(geom.spacing, (2.5, 0.9, 0.7), atol=1e-5)
    assert geom.source_format == "nifti" and geom.file_ending == ending

    seg = (image[0] > 0).astype(np.int64) + (image[0] > 1)
    out = tmp_path / f"pred{ending}"
    write_segmentation(seg, geom, out)
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, nib.load(src).affine, atol=1e-4)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj).transpose(2, 1, 0), seg)

    label, lgeom = read_label(out)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, seg)
    assert lgeom.same_grid(geom)


@pytest.mark.parametrize("ending, fmt", [(".nrrd", "nrrd"), (".mha", "mha"), (".mhd", "mha"), (".nii.gz", "nifti")])
def test_3d_round_trip_keeps_geometry(tmp_path, ending, fmt):
    data = np.random.default_rng(1).uniform(-100, 100, size=(1, *GEOM_OBLIQUE.shape)).astype(np.float32)
    path = tmp_path / f"img{ending}"
    write_image(data, GEOM_OBLIQUE, path)
    image, geom = read_image(path)
    np.testing.assert_allclose(image, data)
    assert geom.same_grid(GEOM_OBLIQUE, tol=1e-5)
    assert geom.source_format == fmt and geom.file_ending == ending

    # the written image is what SimpleITK itself sees (spacing reversed to x, y, z)
    img = sitk.ReadImage(str(path))
    assert img.GetSpacing() == pytest.approx(GEOM_OBLIQUE.spacing[::-1])

    seg = (data[0] > 0).astype(np.uint8) * 3
    write_segmentation(seg, geom, tmp_path / f"seg{ending}")
    label, lgeom = read_label(tmp_path / f"seg{ending}")
    np.testing.assert_array_equal(label, seg)
    assert lgeom.same_grid(GEOM_OBLIQUE, tol=1e-5)


def test_multichannel_and_vector_images_become_channels(tmp_path):
    data = np.random.default_rng(2).normal(size=(2, 3, 4, 5)).astype(np.float32)
    geom = Geometry(spacing=(3.0, 1.0, 0.5), shape=(3, 4, 5))
    write_image(data, geom, tmp_path / "vec.nrrd")
    image, g = read_image(tmp_path / "vec.nrrd")
    assert image.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(image, data)
    assert g.shape == (3, 4, 5)
    with pytest.raises(ImageReadError, match="single-channel"):
        read_label(tmp_path / "vec.nrrd")


def test_4d_nifti_fourth_axis_is_channels(tmp_path):
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(5, 4, 3, 2)  # nibabel (x, y, z, t)
    affine = np.diag([0.5, 0.6, 2.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "multi.nii.gz")
    image, geom = read_image(tmp_path / "multi.nii.gz")
    assert image.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(image[1], data[..., 1].transpose(2, 1, 0))
    np.testing.assert_allclose(geom.spacing, (2.0, 0.6, 0.5))
    assert len(geom.direction) == 9


def test_2d_nifti_is_dim2_with_real_spacing(tmp_path):
    img = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(3, 4))
    img.SetSpacing((0.3, 0.4))
    img.SetOrigin((5.0, 6.0))
    sitk.WriteImage(img, str(tmp_path / "slice.nii.gz"))
    image, geom = read_image(tmp_path / "slice.nii.gz")
    assert image.shape == (1, 1, 3, 4) and geom.dim == 2 and geom.shape == (1, 3, 4)
    assert geom.spacing == pytest.approx((DUMMY_2D_SPACING, 0.4, 0.3))
    assert geom.origin[:2] == pytest.approx((5.0, 6.0))

    write_segmentation(np.ones((1, 3, 4), dtype=np.uint8), geom, tmp_path / "seg.nii.gz")
    back = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    assert back.GetDimension() == 2
    assert back.GetSpacing() == pytest.approx((0.3, 0.4))
    assert back.GetOrigin() == pytest.approx((5.0, 6.0))


# -------------------------------------------------------------------------------- 2D formats

def _gray(h=10, w=12):
    return (np.arange(h * w).reshape(h, w) * 2 % 256).astype(np.uint8)


@pytest.mark.parametrize("ending", [".png", ".bmp", ".tif", ".tiff"])
def test_2d_gray_lossless_round_trip(tmp_path, ending):
    gray = _gray()
    Image.fromarray(gray).save(tmp_path / f"a{ending}")
    image, geom = read_image(tmp_path / f"a{ending}")
    assert image.shape == (1, 1, 10, 12) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0, 0], gray)
    assert geom.dim == 2 and geom.shape == (1, 10, 12)
    assert geom.spacing == (DUMMY_2D_SPACING, 1.0, 1.0)
    assert geom.source_format == "image2d" and geom.file_ending == ending

    write_image(image, geom, tmp_path / f"b{ending}")
    again, _ = read_image(tmp_path / f"b{ending}")
    np.testing.assert_array_equal(again, image)


def test_rgb_png_and_rgba_drops_alpha(tmp_path):
    rgb = np.stack([_gray(), 255 - _gray(), np.full((10, 12), 7, np.uint8)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    image, geom = read_image(tmp_path / "rgb.png")
    assert image.shape == (3, 1, 10, 12)
    np.testing.assert_array_equal(image[:, 0], rgb.transpose(2, 0, 1))

    rgba = np.concatenate([rgb, np.full((10, 12, 1), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image4, _ = read_image(tmp_path / "rgba.png")
    assert image4.shape == (3, 1, 10, 12)
    np.testing.assert_array_equal(image4, image)

    write_image(image, geom, tmp_path / "rgb_out.png")
    with Image.open(tmp_path / "rgb_out.png") as im:
        assert im.mode == "RGB"
    np.testing.assert_array_equal(read_image(tmp_path / "rgb_out.png")[0], image)


def test_16bit_png_kept(tmp_path):
    deep = (np.arange(120).reshape(10, 12) * 500).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image, geom = read_image(tmp_path / "deep.png")
    assert image.max() == deep.max() > 255
    np.testing.assert_array_equal(image[0, 0], deep)
    write_image(image, geom, tmp_path / "deep_out.png")
    np.testing.assert_array_equal(read_image(tmp_path / "deep_out.png")[0][0, 0], deep)


@pytest.mark.parametrize("ending", [".jpg", ".jpeg"])
def test_jpeg_read(tmp_path, ending):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[4:12, 4:12, 2] = 100
    Image.fromarray(rgb).save(tmp_path / f"photo{ending}", quality=95)
    image, geom = read_image(tmp_path / f"photo{ending}")
    assert image.shape == (3, 1, 16, 16) and geom.dim == 2 and geom.file_ending == ending
    assert np.abs(image[:, 0] - rgb.transpose(2, 0, 1)).mean() < 5  # lossy, but close


def test_2d_labels(tmp_path):
    lab = np.zeros((8, 9), np.uint8)
    lab[2:5, 3:7] = 2
    Image.fromarray(lab).save(tmp_path / "lab.png")
    label, geom = read_label(tmp_path / "lab.png")
    assert label.shape == (1, 8, 9) and label.dtype == np.uint8 and geom.dim == 2
    np.testing.assert_array_equal(label[0], lab)

    pal = Image.fromarray(lab, mode="L").convert("P")  # palette PNG: indices are the labels
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "pal.png")
    assert read_label(tmp_path / "pal.png")[0].max() == 2

    rgb = np.stack([lab * 100] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb_label.png")
    with pytest.raises(ImageReadError, match="single-channel integer") as e:
        read_label(tmp_path / "rgb_label.png")
    assert "rgb_label.png" in str(e.value) and "\n" not in str(e.value)

    write_segmentation(label, geom, tmp_path / "pred.png")
    with Image.open(tmp_path / "pred.png") as im:
        assert im.mode == "L"
    np.testing.assert_array_equal(read_label(tmp_path / "pred.png")[0], label)
    with pytest.raises(SelfconfigError, match="lossy"):
        write_segmentation(label, geom, tmp_path / "pred.jpg")


# ------------------------------------------------------------------------------------ labels

def test_label_dtype_and_integrality(tmp_path):
    geom = Geometry(spacing=(1.0, 1.0, 1.0), shape=(2, 3, 4))
    big = np.zeros((2, 3, 4), np.int32)
    big[0, 0, 0] = 300
    big[1, 1, 1] = -1
    write_image(big, geom, tmp_path / "big.nii.gz")
    label, _ = read_label(tmp_path / "big.nii.gz")
    assert label.dtype == np.int16 and label.min() == -1 and label.max() == 300

    write_image(np.full((2, 3, 4), 2.0, np.float32), geom, tmp_path / "float_ok.nii.gz")
    label, _ = read_label(tmp_path / "float_ok.nii.gz")
    assert label.dtype == np.uint8 and np.all(label == 2)

    soft = np.full((2, 3, 4), 1.0, np.float32)
    soft[0, 1, 2] = 0.5
    write_image(soft, geom, tmp_path / "soft.nii.gz")
    with pytest.raises(ImageReadError, match="non-integer") as e:
        read_label(tmp_path / "soft.nii.gz")
    assert "soft.nii.gz" in str(e.value)


# ------------------------------------------------------------------------------- read_case

def test_read_case_stacks_channels_and_refuses_mismatched_grids(tmp_path):
    geom = Geometry(spacing=(2.0, 1.0, 1.0), shape=(3, 4, 5), origin=(1.0, 2.0, 3.0))
    a = np.full((1, 3, 4, 5), 1.0, np.float32)
    b = np.full((1, 3, 4, 5), 2.0, np.float32)
    write_image(a, geom, tmp_path / "c_0000.nii.gz")
    write_image(b, geom, tmp_path / "c_0001.nii.gz")
    image, g = read_case([tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"])
    assert image.shape == (2, 3, 4, 5)
    assert image[0].max() == 1 and image[1].min() == 2
    assert g.same_grid(geom)

    other = Geometry(spacing=(3.0, 1.0, 1.0), shape=(3, 4, 5), origin=(1.0, 2.0, 3.0))
    write_image(b, other, tmp_path / "c_0002.nii.gz")
    with pytest.raises(ImageReadError, match="share one grid") as e:
        read_case([tmp_path / "c_0000.nii.gz", tmp_path / "c_0002.nii.gz"])
    msg = str(e.value)
    assert "c_0000.nii.gz" in msg and "c_0002.nii.gz" in msg and "spacing" in msg

    write_image(np.zeros((1, 3, 4, 6), np.float32), Geometry((2.0, 1.0, 1.0), (3, 4, 6)), tmp_path / "c_0003.nii.gz")
    with pytest.raises(ImageReadError, match="shape"):
        read_case([tmp_path / "c_0000.nii.gz", tmp_path / "c_0003.nii.gz"])


# ------------------------------------------------------------------------------ bad inputs

def test_corrupt_and_missing_files_raise_image_read_error(tmp_path):
    good = tmp_path / "good.nii.gz"
    write_image(np.random.default_rng(3).normal(size=(1, 8, 8, 8)).astype(np.float32),
                Geometry((1.0, 1.0, 1.0), (8, 8, 8)), good)
    raw = good.read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    write_image(np.ones((1, 8, 8, 8), np.float32), Geometry((1.0, 1.0, 1.0), (8, 8, 8)), tmp_path / "plain.nii")
    raw = (tmp_path / "plain.nii").read_bytes()
    (tmp_path / "trunc.nii").write_bytes(raw[: len(raw) - 100])
    for ending in (".nrrd", ".mha"):
        write_image(np.ones((1, 8, 8, 8), np.float32), Geometry((1.0, 1.0, 1.0), (8, 8, 8)), tmp_path / f"ok{ending}")
        raw = (tmp_path / f"ok{ending}").read_bytes()
        (tmp_path / f"trunc{ending}").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "garbage.nii.gz").write_bytes(b"not an image" * 20)
    (tmp_path / "garbage.png").write_bytes(b"not an image" * 20)
    (tmp_path / "garbage.mha").write_bytes(b"not an image" * 20)
    Image.fromarray(_gray(64, 64)).save(tmp_path / "full.png")
    raw = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "emptydir").mkdir()

    for name in ["trunc.nii.gz", "trunc.nii", "trunc.nrrd", "trunc.mha", "garbage.nii.gz", "garbage.png", "garbage.mha", "trunc.png",
                 "missing.nii.gz", "notes.txt", "emptydir"]:
        with pytest.raises(ImageReadError) as e:
            read_image(tmp_path / name)
        msg = str(e.value)
        assert name in msg, msg
        assert "\n" not in msg and "Traceback" not in msg and "0x" not in msg, msg
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "trunc.nii.gz")
    # cut off just after the header: nibabel cannot open it, SimpleITK reads it and zero-fills
    ct = np.random.default_rng(0).integers(-1024, 500, size=(1, 32, 48, 48)).astype(np.int16)
    write_image(ct, Geometry((1.0, 1.0, 1.0), (32, 48, 48)), tmp_path / "ct.nii.gz")
    (tmp_path / "cut_after_header.nii.gz").write_bytes((tmp_path / "ct.nii.gz").read_bytes()[:300])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "cut_after_header.nii.gz")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_label(tmp_path / "missing.png")


# ------------------------------------------------------------------------------------ DICOM

def _write_slice(path: Path, pixels: np.ndarray, position, orientation, series_uid: str, *,
                 instance: int, spacing=(0.8, 0.6), slope=2.0, intercept=-1000.0,
                 lying_spacing=7.0, lying_thickness=5.0) -> None:
    write_dicom_slice(path, pixels, position, orientation, series_uid, instance=instance, pixel_spacing=spacing,
                      slope=slope, intercept=intercept, slice_thickness=lying_thickness,
                      spacing_between_slices=lying_spacing)


def _write_series(folder: Path, n=6, dz=2.0, rotation=R_OBLIQUE, origin=(-30.0, 12.0, 50.0),
                  series_uid=None, skip=(), seed=0, **kw) -> list[np.ndarray]:
    """n slices of 8x8 along the normal of ``rotation``, written in shuffled order under shuffled
    names; returns the raw pixels of the slices in true spatial order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    row, col, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    orientation = [*row, *col]
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    planes = [np.full((8, 8), 10 * k, np.int16) + np.arange(64, dtype=np.int16).reshape(8, 8) for k in range(n)]
    for instance, k in enumerate(order):
        if k in skip:
            continue
        position = np.asarray(origin) + k * dz * normal
        name = "".join(rng.choice("abcdef0123456789") for _ in range(10))  # no .dcm ending
        _write_slice(folder / name, planes[k], position, orientation, series_uid, instance=n - instance, **kw)
    return planes


def test_dicom_series_order_spacing_rescale(tmp_path, caplog):
    folder = tmp_path / "series"
    planes = _write_series(folder)
    assert is_dicom_folder(folder)
    assert not any(p.suffix == ".dcm" for p in folder.iterdir())

    with caplog.at_level(logging.WARNING):
        image, geom = read_image(folder)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert image.shape == (1, 6, 8, 8) and image.dtype == np.float32
    for k in range(6):  # true spatial order, rescale applied (slope 2, intercept -1000)
        np.testing.assert_allclose(image[0, k], planes[k] * 2.0 - 1000.0)
    np.testing.assert_allclose(geom.spacing, (2.0, 0.8, 0.6), atol=1e-6)  # not 7.0 nor 5.0
    np.testing.assert_allclose(geom.origin, (-30.0, 12.0, 50.0), atol=1e-6)
    np.testing.assert_allclose(np.asarray(geom.direction).reshape(3, 3), R_OBLIQUE, atol=1e-6)
    assert geom.source_format == "dicom" and geom.file_ending == "" and geom.dim == 3

    _assert_geometry_matches_sitk(geom, _sitk_series(folder))
    np.testing.assert_allclose(image[0], sitk.GetArrayFromImage(_sitk_series(folder)))


def test_dicom_segmentation_to_nifti_keeps_geometry(tmp_path):
    folder = tmp_path / "series"
    _write_series(folder)
    image, geom = read_image(folder)
    assert output_ending_for(geom) == ".nii.gz"
    seg = (image[0] > image[0].mean()).astype(np.uint8)
    out = tmp_path / f"pred{output_ending_for(geom)}"
    write_segmentation(seg, geom, out)
    written = sitk.ReadImage(str(out))
    _assert_geometry_matches_sitk(geom, written)
    _assert_geometry_matches_sitk(geom, _sitk_series(folder))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), seg)
    label, lgeom = read_label(out)
    assert lgeom.same_grid(geom)


def test_dicom_two_series_in_one_folder(tmp_path):
    folder = tmp_path / "mixed"
    uid_a, uid_b = generate_uid(), generate_uid()
    _write_series(folder, n=3, series_uid=uid_a, seed=1)
    _write_series(folder, n=2, series_uid=uid_b, seed=2)
    with pytest.raises(ImageReadError, match="one series per folder") as e:
        read_image(folder)
    assert uid_a in str(e.value) and uid_b in str(e.value)


def test_dicom_missing_slice_warns_and_duplicates_fail(tmp_path, caplog):
    gap = tmp_path / "gap"
    _write_series(gap, n=6, skip=(3,))
    with caplog.at_level(logging.WARNING, logger="selfconfig.dataset.dicom"):
        image, geom = read_image(gap)
    assert image.shape[1] == 5 and geom.spacing[0] == pytest.approx(2.0)
    assert any("non-uniform" in r.getMessage() for r in caplog.records)

    dup = tmp_path / "dup"
    _write_series(dup, n=4, dz=0.0)
    with pytest.raises(ImageReadError, match="same position"):
        read_image(dup)


def test_dicom_corrupt_file_and_multiframe(tmp_path):
    folder = tmp_path / "broken"
    _write_series(folder, n=3)
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:200])  # preamble + a torn header
    with pytest.raises(ImageReadError) as e:
        read_image(folder)
    assert victim.name in str(e.value)

    torn = tmp_path / "torn_pixels"
    _write_series(torn, n=3)
    victim = sorted(torn.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-40])  # pixel data cut short
    with pytest.raises(ImageReadError) as e:
        read_image(torn)
    assert victim.name in str(e.value)

    mf = tmp_path / "multiframe"
    mf.mkdir()
    shutil.copy(PYDICOM_FILES / "SC_rgb_rle_2frame.dcm", mf / "frames")
    with pytest.raises(ImageReadError, match="multi-frame"):
        read_image(mf)


def test_real_ct_series_matches_simpleitk(tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    for f in CT5N.iterdir():
        shutil.copy(f, folder / f"slice_{f.name}")  # names no longer sort like positions
    shutil.copy(CT5N.parent.parent / "DICOMDIR", folder / "DICOMDIR")  # an index to skip
    assert is_dicom_folder(folder)
    image, geom = read_image(folder)
    ref = _sitk_series(CT5N)
    _assert_geometry_matches_sitk(geom, ref)
    np.testing.assert_allclose(image[0], sitk.GetArrayFromImage(ref))
    assert geom.spacing[0] == pytest.approx(2.5)


def test_real_folder_with_several_series_is_refused():
    with pytest.raises(ImageReadError, match="one series per folder"):
        read_image(PYDICOM_FILES / "dicomdirtests" / "98892003" / "MR2")


def test_single_slice_dicom_and_undecodable_transfer_syntax(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", one / "x")
    image, geom = read_image(one)
    assert image.shape == (1, 1, 128, 128) and geom.dim == 3
    assert geom.spacing[0] == pytest.approx(5.0)  # SliceThickness for a single slice
    ref = sitk.ReadImage(str(PYDICOM_FILES / "CT_small.dcm"))
    np.testing.assert_allclose(geom.origin, ref.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(image[0], sitk.GetArrayFromImage(ref))
    single, single_geom = read_image(PYDICOM_FILES / "CT_small.dcm")  # one file also reads
    np.testing.assert_array_equal(single, image)
    assert single_geom.same_grid(geom)

    # JPEG-LS needs a pydicom plugin that is not installed: GDCM decodes it instead
    plain, jls = tmp_path / "plain", tmp_path / "jls"
    plain.mkdir()
    jls.mkdir()
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", plain / "a")
    shutil.copy(PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm", jls / "a")
    np.testing.assert_array_equal(read_image(jls)[0], read_image(plain)[0])


def test_is_dicom_folder(tmp_path):
    assert not is_dicom_folder(tmp_path)
    assert not is_dicom_folder(CT5N / "2062")  # a file, not a folder
    (tmp_path / "readme.txt").write_text("x")
    assert not is_dicom_folder(tmp_path)
    assert is_dicom_folder(CT5N)
