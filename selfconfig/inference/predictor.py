"""The predictor: checkpoints -> networks -> predictions in the input's geometry.

The same preprocessing code as training (:func:`selfconfig.preprocessing.preprocessor.preprocess_case`)
prepares every image; segmentation probabilities are resampled back to the cropped region,
placed into the full image and written with the input's spacing, origin and direction.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.labels import LabelScheme
from selfconfig.errors import CheckpointError, ConfigurationError, IncompatibleDatasetError, PreviousStageError
from selfconfig.paths import parse_run_dir, run_folder_name, train_command_line
from selfconfig.plans import Plans
from selfconfig.precision import autocast, resolve_precision
from selfconfig.preprocessing.preprocessor import preprocess_case
from selfconfig.preprocessing.previous_stage import append_previous_stage, to_preprocessed_grid
from selfconfig.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    network: nn.Module
    plans: Plans
    configuration: str
    trainer: str
    source: Path


def build_network_for(plans: Plans, configuration: str) -> nn.Module:
    from selfconfig.networks import build_classification_network, build_segmentation_network

    plan = plans.configuration(configuration).network
    return build_segmentation_network(plan) if plans.task == "segmentation" else build_classification_network(plan)


def load_model(path: Path, device: torch.device) -> LoadedModel:
    ckpt = load_checkpoint(path, map_location="cpu")
    plans = Plans.from_dict(ckpt["plans"])
    cfg = ckpt["configuration"]
    net = build_network_for(plans, cfg)
    state = ckpt["module"]["network"] if "module" in ckpt else ckpt["network"]
    net.load_state_dict(state)
    net.to(device).eval()
    if hasattr(net, "deep_supervision"):
        net.deep_supervision = False
    return LoadedModel(net, plans, cfg, ckpt.get("trainer", "?"), Path(path))


def mirror_combinations(n_spatial: int, enabled: bool, axes=None) -> list[tuple[int, ...]]:
    """All subsets of ``axes`` (default: every spatial axis; 2^n mirrorings, identity first) or just
    the identity. ``axes`` is the configuration's ``axes_to_mirror()``: an axis along which two
    classes are mirror images is not mirrored at test time either."""
    if not enabled:
        return [()]
    axes = sorted(int(a) for a in (range(n_spatial) if axes is None else axes) if int(a) < n_spatial)
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


#: the stitched volume may take at most this share of the GPU memory free at the start of a case
STITCH_FREE_MEMORY_SHARE = 0.5


def stitch_bytes(num_outputs: int, in_channels: int, spatial_shape, mirroring: bool) -> int:
    """Bytes the stitching of one case holds on its device, in float32: the input (and its
    mirrored copy), MONAI's output and count maps, the softmax, and the running sum of the
    mirrorings/ensemble members."""
    voxels = int(np.prod([int(s) for s in spatial_shape]))
    per_voxel = in_channels * (2 if mirroring else 1) + num_outputs * 3 + 1
    return 4 * voxels * per_voxel


def choose_stitch_device(device: torch.device, needed_bytes: int, free_bytes: int | None = None,
                         share: float = STITCH_FREE_MEMORY_SHARE) -> torch.device:
    """Where the sliding windows are stitched (MONAI's ``device``; the windows run on ``device``,
    MONAI's ``sw_device``): on the GPU when the whole volume fits into ``share`` of its free
    memory, else on the CPU, so that a large CT does not run out of GPU memory."""
    if device.type != "cuda":
        return device
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    if needed_bytes > share * free_bytes:
        return torch.device("cpu")
    return device


def previous_stage_checkpoint(path: Path, configuration: str, previous: str) -> Path:
    """The checkpoint of a cascade's previous stage: the same file of the same trainer, plans, tag,
    fraction and fold, in the previous configuration's run folder
    (``<Trainer>__<plans>__<previous>[__tag]/frac_<f>/fold_<k>/``)."""
    path = Path(path)
    loc = parse_run_dir(path.parent)
    if loc is None or loc.configuration != configuration:
        raise PreviousStageError(f"{path} is not in a run folder <Trainer>__<plans>__{configuration}/frac_<f>/fold_<k>, "
                                 f"so the {previous} model that this cascade needs cannot be found beside it")
    fold_dir, frac_dir = path.parent, path.parent.parent
    return (frac_dir.parent.parent / run_folder_name(loc.trainer, loc.plans, previous, loc.tag) / frac_dir.name
            / fold_dir.name / path.name)


def _train_command(prev_path: Path, plans: Plans, trainer: str) -> str:
    """``selfconfig_train`` for the run folder of ``prev_path`` (a missing previous stage)."""
    loc = parse_run_dir(prev_path.parent)
    return train_command_line(plans.dataset_name, loc.configuration, trainer, loc.fraction, loc.fold, loc.plans, loc.tag)


class Predictor:
    """Ensemble of the models of one run configuration (e.g. its folds).

    A cascade configuration (``previous_stage`` in its plan) needs ``previous_stage``: the
    :class:`Predictor` of the previous stage, whose segmentation of each case becomes extra one-hot
    input channels (:mod:`selfconfig.preprocessing.previous_stage`); :meth:`from_checkpoints` finds it.
    ``previous_stage_in_data``: a cascade predictor without it, for preprocessed cases that already
    carry those channels (:func:`~selfconfig.preprocessing.previous_stage.append_previous_stage`), as
    training's whole-scan scoring gives them; it predicts no scans (:meth:`predict_case` refuses).
    """

    def __init__(self, models: list[LoadedModel], device: torch.device, tta: bool = True, step_size: float = 0.5,
                 sw_batch_size: int = 4, precision: str = "auto", stitch: str = "auto",
                 previous_stage: "Predictor | None" = None, previous_stage_in_data: bool = False):
        if not models:
            raise CheckpointError("no model to predict with")
        first = models[0]
        for m in models[1:]:
            if m.configuration != first.configuration or m.plans.to_dict() != first.plans.to_dict():
                raise CheckpointError(f"{m.source} was trained with other plans/configuration than {first.source}; "
                                      f"ensemble only folds of one run configuration")
        if not 0 < step_size <= 1:
            raise ConfigurationError(f"--step-size {step_size} must be in (0, 1]")
        self.models = models
        self.plans = first.plans
        self.configuration = first.configuration
        self.config = self.plans.configuration(self.configuration)
        self.device = device
        self.tta = tta
        self.step_size = step_size
        self.sw_batch_size = sw_batch_size
        self.precision = resolve_precision(precision, device)
        self.label_scheme = LabelScheme.of(self.plans) if self.plans.task == "segmentation" else None
        # region-based models have one sigmoid output per region; every other model a softmax
        self.sigmoid = bool(self.label_scheme is not None and self.label_scheme.has_regions)
        if stitch not in ("auto", "device", "cpu"):
            raise ConfigurationError(f"stitch={stitch!r} is not one of auto, device, cpu")
        self.stitch = stitch  # auto: on the device unless the volume is too large for its free memory
        self.previous_stage = previous_stage
        if self.config.previous_stage and previous_stage is None and not previous_stage_in_data:
            raise PreviousStageError(f"{first.source}: configuration {self.configuration} needs the predictions of "
                                     f"{self.config.previous_stage}; build the predictor with Predictor.from_checkpoints")
        if previous_stage is not None and previous_stage.plans.labels != self.plans.labels:
            raise CheckpointError(f"the {previous_stage.configuration} model {previous_stage.models[0].source} has other "
                                  f"labels than {first.source}; train both stages with the same plans")

    @classmethod
    def from_checkpoints(cls, paths: list[Path], device: torch.device | None = None, **kw) -> "Predictor":
        """The predictor of these checkpoints; for a cascade configuration also that of its previous
        stage, from the checkpoints of the same trainer, fraction and folds
        (:func:`previous_stage_checkpoint`), itself found the same way."""
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        models = [load_model(Path(p), device) for p in paths]
        previous = None
        cfg = models[0].plans.configuration(models[0].configuration) if models else None
        if cfg is not None and cfg.previous_stage:
            prev_paths = [previous_stage_checkpoint(Path(p), models[0].configuration, cfg.previous_stage) for p in paths]
            for p, m in zip(prev_paths, models):
                if not p.is_file():
                    raise PreviousStageError(
                        f"the {m.configuration} model {m.source} runs the {cfg.previous_stage} model of the same "
                        f"trainer, fraction and fold first, and {p} does not exist: train it with "
                        f"`{_train_command(p, m.plans, m.trainer)}`")
            previous = cls.from_checkpoints(prev_paths, device, **kw)
        return cls(models, device, previous_stage=previous, **kw)

    @property
    def checkpoints(self) -> list[Path]:
        """Every checkpoint this predictor runs, its previous stages' included."""
        own = [m.source for m in self.models]
        return own + (self.previous_stage.checkpoints if self.previous_stage is not None else [])

    @property
    def task(self) -> str:
        return self.plans.task

    # ------------------------------------------------------------------ checks
    def check_input(self, image: np.ndarray, geometry: Geometry, source: str) -> None:
        p = self.plans
        if image.shape[0] != p.num_input_channels:
            raise IncompatibleDatasetError(
                f"{source}: has {image.shape[0]} channel(s) but the model expects {p.num_input_channels} "
                f"({', '.join(p.channel_names.values())}); give one file per channel as CASE_0000, CASE_0001 ...")
        if p.dim == 2 and geometry.dim == 3 and geometry.shape[0] > 1:
            raise IncompatibleDatasetError(
                f"{source}: is a 3D volume {tuple(geometry.shape)} but the model was trained on 2D images")
        if p.dim == 3 and geometry.dim == 2:
            raise IncompatibleDatasetError(f"{source}: is a 2D image but the model was trained on 3D volumes")

    # ------------------------------------------------------------------ core
    def stitch_device(self, shape) -> torch.device:
        """Where a 3D case of preprocessed ``shape`` (C, Z, Y, X) is stitched (see :func:`choose_stitch_device`)."""
        if self.stitch == "device" or self.device.type != "cuda":
            return self.device
        if self.stitch == "cpu":
            return torch.device("cpu")
        outputs = self.label_scheme.num_outputs if self.label_scheme is not None else self.plans.num_classes
        need = stitch_bytes(outputs, int(shape[0]), shape[1:], self.tta and bool(self.config.axes_to_mirror()))
        where = choose_stitch_device(self.device, need)
        if where != self.device:
            log.info("case of %s voxels: stitching the windows on the CPU (about %.1f GB), the network runs on %s",
                     "x".join(str(int(s)) for s in shape[1:]), need / 1e9, self.device)
        return where

    @torch.inference_mode()
    def _network_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax (regions: sigmoid) probabilities of the ensemble on a preprocessed tensor (B, C, *spatial), with
        sliding window for segmentation and mirroring when enabled. The windows run on the
        predictor's device; they are stitched where ``x`` lies."""
        patch = list(self.config.patch_size)
        n_sp = x.ndim - 2
        total = None
        count = 0
        with autocast(self.precision, self.device):
            for model in self.models:
                for axes in mirror_combinations(n_sp, self.tta, self.config.axes_to_mirror()):
                    dims = [a + 2 for a in axes]
                    xi = torch.flip(x, dims) if dims else x
                    if self.task == "segmentation":
                        logits = sliding_window_inference(
                            xi, roi_size=patch, sw_batch_size=self.sw_batch_size, predictor=model.network,
                            overlap=1.0 - self.step_size, mode="gaussian", sigma_scale=0.125,
                            padding_mode="constant", cval=0.0, sw_device=self.device, device=x.device)
                        probs = torch.sigmoid(logits.float()) if self.sigmoid else torch.softmax(logits.float(), 1)
                        if dims:
                            probs = torch.flip(probs, dims)
                    else:
                        probs = torch.softmax(model.network(xi).float(), 1)
                    total = probs if total is None else total + probs
                    count += 1
        return total / count

    def predict_preprocessed(self, data: np.ndarray) -> np.ndarray:
        """Probabilities for a preprocessed case (C, Z, Y, X) -> segmentation (K, Z, Y, X) or (K,)."""
        x = torch.from_numpy(np.ascontiguousarray(data))
        if self.task == "classification":
            from selfconfig.data.sampler import crop_with_pad

            patch = list(self.config.patch_size)
            arr = data if self.config.dim == 3 else data[:, data.shape[1] // 2]
            start = [(s - p) // 2 for s, p in zip(arr.shape[1:], patch)]
            arr = crop_with_pad(arr, start, patch)
            return self._network_probs(torch.from_numpy(arr)[None].to(self.device))[0].cpu().numpy()
        if self.config.dim == 3:
            return self._network_probs(x.to(self.stitch_device(x.shape))[None])[0].cpu().numpy()
        x = x.to(self.device)
        # 2D configuration: slices of (C, Z, Y, X) as a batch
        out = []
        step = 16
        for z0 in range(0, x.shape[1], step):
            xs = x[:, z0:z0 + step].permute(1, 0, 2, 3)
            out.append(self._network_probs(xs).permute(1, 0, 2, 3))
        return torch.cat(out, 1).cpu().numpy()

    def predict_case(self, image: np.ndarray, geometry: Geometry, source: str = "input",
                     return_probabilities: bool = False) -> dict:
        """Predict one case read from disk. Segmentation -> ``seg`` (Z, Y, X) on the input's grid
        (and ``probabilities`` (K, Z, Y, X) if asked); classification -> ``probabilities`` (K,)."""
        self.check_input(image, geometry, source)
        if self.config.previous_stage and self.previous_stage is None:
            raise PreviousStageError(f"{self.models[0].source}: this {self.configuration} predictor takes preprocessed "
                                     f"cases that carry their {self.config.previous_stage} channels; build it with "
                                     f"Predictor.from_checkpoints to predict scans")
        data, _, props = preprocess_case(image, geometry, None, self.plans, self.config)
        if self.previous_stage is not None:
            data = self.add_previous_stage(data, image, geometry, props, source)
        probs = self.predict_preprocessed(data)
        if self.task == "classification":
            return {"probabilities": probs, "prediction": int(np.argmax(probs))}
        full = revert_to_original(probs, props, background_channel=not self.sigmoid)
        out = {"seg": self.label_scheme.probabilities_to_label_map(full)}
        if return_probabilities:
            out["probabilities"] = full
        return out

    def add_previous_stage(self, data: np.ndarray, image: np.ndarray, geometry: Geometry, props: dict,
                           source: str) -> np.ndarray:
        """``data`` (C, Z, Y, X) with the previous stage's segmentation of the scan appended as
        one-hot channels: predicted on the scan's own grid, then cropped and resampled as the case."""
        prev = self.previous_stage.predict_case(image, geometry, source)["seg"]
        return append_previous_stage(data, to_preprocessed_grid(prev, props, self.plans, self.config, source),
                                     self.plans)


def revert_to_original(probs: np.ndarray, props: dict, background_channel: bool = True) -> np.ndarray:
    """Resample (K, z, y, x) probabilities to the cropped shape and place them in the full image
    (outside the crop box: background = 1, or every region 0 when there is no background channel)."""
    crop_shape = [int(s) for s in props["shape_after_crop"]]
    t = torch.from_numpy(probs)[None].float()
    if list(t.shape[2:]) != crop_shape:
        t = F.interpolate(t, size=crop_shape, mode="trilinear", align_corners=False)
    t = t[0]
    full_shape = [int(s) for s in props["geometry"]["shape"]]
    out = torch.zeros((t.shape[0], *full_shape), dtype=torch.float32)
    if background_channel:
        out[0] = 1.0
    box = props["crop_box"]
    out[(slice(None), *[slice(a, b) for a, b in box])] = t
    return out.numpy()
