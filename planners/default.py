"""DefaultPlanner: fingerprint -> plans (target spacing, patch, batch, normalisation, topology).

Follows nnU-Net's heuristics (median spacing, anisotropy handling, pooling until feature maps
are 4 voxels, patch shrunk along the axis that is largest relative to the median shape until
the budget is met) with one difference: the budget is either GPU memory (``--gpu-memory-gb``)
or, on a machine without a GPU, CPU time per training iteration (default about 1 s), so that a
plan made here is trainable here.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import replace

import numpy as np

from planners.budget import CpuBudgetModel, GpuBudgetModel
from planners.mirror import MirrorAnalysis, MirrorRule, find_mirror_pairs
from planners.topology import plan_topology
from selfconfig.dataset.schema import DatasetInfo
from selfconfig.errors import ConfigurationError
from selfconfig.preprocessing.normalize import expand_schemes
from selfconfig.plans import (Budget, ConfigurationPlan, DecoderPlan, EncoderPlan, HeadPlan, NetworkPlan,
                              Plans)

log = logging.getLogger(__name__)


class DefaultPlanner:
    """The default planner. Subclass and override a method or class attribute to change a decision."""

    plans_name = "selfconfigPlans"
    anisotropy_threshold = 3.0
    min_feature_map_size = 4
    max_stages = 7
    n_conv_per_stage = 2
    n_conv_per_stage_decoder = 2
    # (base, max) features per stage, by device and dimensionality
    features = {("cuda", 3): (32, 320), ("cuda", 2): (32, 512), ("cpu", 3): (16, 256), ("cpu", 2): (16, 256)}
    min_batch_size = 2
    max_batch_fraction_of_dataset = 0.05  # a batch covers at most 5 % of the dataset's voxels (as nnU-Net)
    initial_patch_volume = {3: 256 ** 3, 2: 2048 ** 2}
    #: encoder of the ImageNet-compatible configurations ("" to plan none)
    imagenet_encoder = "efficientnet_lite0"
    #: plan ``3d_lowres`` when the full-resolution patch holds less than this fraction of the median
    #: shape's voxels (nnU-Net's threshold)
    lowres_creation_threshold = 0.25
    #: coarsen the low-resolution spacing until its patch holds at least this fraction of the median
    #: shape (nnU-Net stops at 0.25; a network needs to see most of the object to tell its parts apart
    #: when it trains for minutes, not days: documentation/plans.md)
    lowres_target_coverage = 0.5
    #: spacing growth per step while searching the low-resolution spacing (nnU-Net's)
    lowres_spacing_step = 1.03
    #: never coarsen more than this relative to the full-resolution spacing
    lowres_max_factor = 8.0
    #: an axis is not mirrored when two classes are mirror images along it (planners/mirror.py):
    #: in this share of the cases holding both, on opposite sides of the foreground centre, each at
    #: least ``min_offset`` of the foreground extent from it, volumes within ``max_volume_ratio``
    mirror_rule = MirrorRule(min_share=0.8, min_offset=0.1, max_volume_ratio=2.0)

    def __init__(self, info: DatasetInfo, fingerprint: dict, *, gpu_memory_gb: float | None = None,
                 cpu_target_seconds: float = 1.0, cpu_gflops: float | None = None,
                 plans_name: str | None = None, measure: bool = True, throughput_cache=None,
                 remeasure_cpu: bool = False, target_spacing: list[float] | None = None):
        self.info = info
        self.fp = fingerprint
        self.dim = int(fingerprint["dim"])
        self.target_spacing = self.check_target_spacing(target_spacing)
        self.plans_name = plans_name or self.plans_name
        self.mirror_analysis = self.find_mirror_pairs()
        if gpu_memory_gb:
            self.device = "cuda"
            self.budget_model = GpuBudgetModel(gpu_memory_gb)
        else:
            self.device = "cpu"
            self.budget_model = CpuBudgetModel(cpu_target_seconds, gflops=cpu_gflops, measure=measure,
                                               cache_file=throughput_cache, remeasure=remeasure_cpu)

    # ------------------------------------------------------------------ spacing
    def check_target_spacing(self, spacing: list[float] | None) -> list[float] | None:
        """The user's full-resolution spacing (nnU-Net's ``-overwrite_target_spacing``): one value per
        axis of the data (z y x for 3D, y x for 2D), each > 0; ``None`` when not given."""
        if spacing is None:
            return None
        values = [float(v) for v in spacing]
        if len(values) != self.dim or not all(np.isfinite(v) and v > 0 for v in values):
            axes = "z y x" if self.dim == 3 else "y x"
            raise ConfigurationError(f"target spacing {' '.join(str(v) for v in spacing)}: give {self.dim} positive "
                                     f"values ({axes}) for this {self.dim}D dataset")
        return values

    def fullres_target_spacing(self) -> list[float]:
        """(z, y, x) spacing of the full-resolution configuration: nnU-Net's rule (the median spacing,
        the 10th percentile along an axis much coarser than the others), or the user's target spacing
        (``--overwrite-target-spacing``; for 2D data z stays the median, it is not an image axis)."""
        spacings = np.asarray(self.fp["spacings"], dtype=float)
        sizes = np.asarray(self.fp["shapes_after_crop"], dtype=float)
        target = np.percentile(spacings, 50, axis=0)
        if self.target_spacing is not None:
            return [float(v) for v in target[: 3 - self.dim]] + list(self.target_spacing)
        if self.dim == 2:
            return target.tolist()
        target_size = np.percentile(sizes, 50, axis=0)
        worst = int(np.argmax(target))
        others = [i for i in range(3) if i != worst]
        aniso_spacing = target[worst] > self.anisotropy_threshold * max(target[i] for i in others)
        aniso_voxels = target_size[worst] * self.anisotropy_threshold < min(target_size[i] for i in others)
        if aniso_spacing and aniso_voxels:
            t = float(np.percentile(spacings[:, worst], 10))
            target[worst] = max(t, max(target[i] for i in others) + 1e-5)
        return target.tolist()

    def median_shape_at(self, spacing3: list[float]) -> list[int]:
        """Median shape after cropping, resampled to ``spacing3`` (z, y, x)."""
        shapes = np.asarray(self.fp["shapes_after_crop"], dtype=float)
        spacings = np.asarray(self.fp["spacings"], dtype=float)
        new = np.round(shapes * spacings / np.asarray(spacing3)[None]).astype(int)
        return np.median(new, axis=0).astype(int).clip(1).tolist()

    # ------------------------------------------------------------------ mirroring
    def find_mirror_pairs(self) -> MirrorAnalysis:
        """Classes that are mirror images along an axis (segmentation; none for classification)."""
        if self.info.task != "segmentation":
            return MirrorAnalysis()
        analysis = find_mirror_pairs(self.fp, self.mirror_rule)
        for p in analysis.pairs:
            log.info("classes %d/%d are mirror images along axis %d (%s) in %.0f %% of the %d case(s) holding "
                     "both: that axis is not mirrored", *p.classes, p.axis, "zyx"[p.axis], 100 * p.share, p.cases)
        return analysis

    def mirror_axes(self, dim: int) -> tuple[list[int], str]:
        """``mirror_axes`` and its reason for a ``dim``-D configuration."""
        return self.mirror_analysis.for_configuration(dim)

    # ------------------------------------------------------------------ plans
    def plan(self) -> Plans:
        target = self.fullres_target_spacing()
        configurations: dict[str, ConfigurationPlan] = {}
        if self.dim == 3:
            shape3 = self.median_shape_at(target)
            configurations["3d"] = self.plan_configuration("3d", target, shape3)
            lowres = self.plan_lowres(configurations["3d"])
            if lowres is not None:
                configurations["3d_lowres"] = lowres
            # 2d: slices; in-plane target spacing, z left as it is (every slice is a sample)
            configurations["2d"] = self.plan_configuration("2d", target[1:], shape3[1:], samples_per_case=shape3[0])
            recommended = self.recommend(configurations)
        else:
            shape3 = self.median_shape_at(target)
            configurations["2d"] = self.plan_configuration("2d", target[1:], shape3[1:])
            recommended = "2d"
        self.add_configurations(configurations)
        if "3d_lowres" in configurations and "3d" in configurations:
            configurations["3d_cascade_fullres"] = self.plan_cascade(configurations["3d"], "3d_lowres")
        intens = self.fp["foreground_intensity_properties_per_channel"]
        plans = Plans(
            dataset_name=self.info.name,
            plans_name=self.plans_name,
            planner=type(self).__name__,
            task=self.info.task,
            dim=self.dim,
            channel_names=dict(self.info.channel_names),
            labels=dict(self.info.labels),
            num_input_channels=self.info.num_input_channels,
            num_classes=self.info.num_classes,
            original_median_spacing=[float(v) for v in self.fp["median_spacing"]],
            original_median_shape=[int(v) for v in self.fp["median_shape_after_crop"]],
            intensity_properties=intens,
            configurations=configurations,
            recommended_configuration=recommended,
            budget=self.budget_model.describe(),
            regions_class_order=self.info.regions_class_order,
        )
        if self.target_spacing is not None:
            plans.notes.append(f"full-resolution target spacing {' x '.join(f'{v:g}' for v in self.target_spacing)} "
                               f"set by the user (the data's median spacing is "
                               f"{' x '.join(f'{v:g}' for v in self.fp['median_spacing'][3 - self.dim:])})")
        return plans

    @staticmethod
    def coverage(cfg: ConfigurationPlan) -> float:
        """Fraction of the median shape's voxels that one patch holds (at most 1)."""
        return float(min(1.0, np.prod([min(p, m) for p, m in zip(cfg.patch_size, cfg.median_shape)], dtype=float)
                         / max(np.prod(cfg.median_shape, dtype=float), 1.0)))

    def plan_lowres(self, fullres: ConfigurationPlan) -> ConfigurationPlan | None:
        """``3d_lowres`` as nnU-Net makes it, when the budget-limited full-resolution patch holds less
        than :attr:`lowres_creation_threshold` of the median shape: the spacing grows by
        :attr:`lowres_spacing_step` (:meth:`coarsen`) until the patch the budget allows holds
        :attr:`lowres_target_coverage` of the median shape at that spacing. ``None`` when the
        full-resolution patch already sees enough, or the data are classification cases (a
        classifier's patch is the whole case)."""
        if self.info.task != "segmentation" or self.coverage(fullres) >= self.lowres_creation_threshold:
            return None
        base = np.asarray(fullres.spacing, dtype=float)
        spacing = base.copy()
        cfg = fullres
        while self.coverage(cfg) < self.lowres_target_coverage:
            if float(np.max(spacing / base)) >= self.lowres_max_factor:
                log.warning("3d_lowres: the patch still holds only %.0f %% of the median shape at %s mm "
                            "(%.0fx the full-resolution spacing)", 100 * self.coverage(cfg),
                            "x".join(f"{v:.2f}" for v in spacing), self.lowres_max_factor)
                break
            spacing = self.coarsen(spacing)
            cfg = self.plan_configuration("3d_lowres", spacing.tolist(), self.median_shape_at(spacing.tolist()))
        log.info("3d: the patch holds %.0f %% of the median shape; planned 3d_lowres at %s mm holding %.0f %%",
                 100 * self.coverage(fullres), "x".join(f"{v:.2f}" for v in cfg.spacing), 100 * self.coverage(cfg))
        return cfg

    def coarsen(self, spacing: np.ndarray) -> np.ndarray:
        """One step of the low-resolution spacing search: the finer axes catch up with the coarsest
        first (a coarse grid should be isotropic: coarsening the axis that is already the coarsest
        loses the most), then all axes grow together."""
        fine = spacing < spacing.max() * (1 - 1e-6)
        if fine.any():
            return np.where(fine, np.minimum(spacing * self.lowres_spacing_step, spacing.max()), spacing)
        return spacing * self.lowres_spacing_step

    def plan_cascade(self, fullres: ConfigurationPlan, previous: str,
                     name: str = "3d_cascade_fullres") -> ConfigurationPlan:
        """nnU-Net's ``3d_cascade_fullres``: the full-resolution configuration (same data, spacing,
        patch and batch) whose network also gets the segmentation that ``previous`` predicted, as one
        one-hot channel per foreground label value after the image channels (as nnU-Net: background
        is implicit). Planned whenever ``3d_lowres`` is; the extra channels only change the first
        convolution, so the estimate is refreshed but the patch is kept."""
        from selfconfig.dataset.labels import LabelScheme

        extra = len(LabelScheme.of(self.info).foreground_labels)
        network = replace(copy.deepcopy(fullres.network), in_channels=self.info.num_input_channels + extra)
        cfg = replace(copy.deepcopy(fullres), name=name, network=network, previous_stage=previous,
                      data_identifier=fullres.data_name)
        self.budget_model.annotate(cfg, self.info.task)
        return cfg

    def recommend(self, configurations: dict[str, ConfigurationPlan]) -> str:
        """The configuration to train by default. A CPU budget allows minutes to hours of training:
        there a network that sees the whole object at a coarser spacing learns far faster than one
        that sees a tenth of it at full resolution (LUNG_LOBES, 600 iterations: Dice 0.89 vs 0.30,
        documentation/plans.md), so ``3d_lowres`` is recommended where it exists. A GPU budget
        trains for days: ``3d`` (full resolution), as nnU-Net; ``selfconfig_find_best_configuration``
        compares them by cross-validation."""
        if "3d_lowres" in configurations and self.device == "cpu":
            return "3d_lowres"
        return "3d"

    def add_configurations(self, configurations: dict[str, ConfigurationPlan]) -> None:
        """Add ``<config>_imagenet`` for every configuration: the same data (spacing, patch
        budget) with an ImageNet-compatible encoder (:attr:`imagenet_encoder`), so that Scratch,
        the surrogates and ImageNet can be compared on one architecture. Subclasses may add more."""
        if not self.imagenet_encoder:
            return
        for base_name in list(configurations):
            name = f"{base_name}_imagenet"
            configurations[name] = self.plan_imagenet_configuration(name, configurations[base_name])

    def plan_imagenet_configuration(self, name: str, base: ConfigurationPlan) -> ConfigurationPlan:
        from selfconfig.networks import decoder_stage_count, imagenet_encoder_layout

        dim = base.dim
        enc = imagenet_encoder_layout(self.imagenet_encoder, dim)
        # RGB channels are standardised with ImageNet's statistics inside the encoder
        enc.input_schemes = expand_schemes(list(base.normalization), self.info.num_input_channels)
        net = NetworkPlan(dim=dim, in_channels=self.info.num_input_channels, num_classes=self.info.num_classes,
                          encoder=enc, decoder=DecoderPlan([self.n_conv_per_stage_decoder] * decoder_stage_count(enc)),
                          head=HeadPlan())
        div = enc.total_stride()
        median = list(base.median_shape)
        patch = [max(d, int(math.ceil(m / d) * d)) if self.info.task == "classification" else
                 max(d, int(math.ceil(p / d) * d)) for p, m, d in zip(base.patch_size, median, div)]
        cost = self.budget_model.cost_per_sample(net, patch, self.info.task)
        while cost * self.min_batch_size > self.budget_model.limit:
            order = np.argsort([p / m for p, m in zip(patch, median)])[::-1]
            axis = next((int(a) for a in order if patch[a] - div[a] >= div[a]), None)
            if axis is None:
                log.warning("configuration %s: the smallest patch exceeds the budget", name)
                break
            patch[axis] -= div[axis]
            cost = self.budget_model.cost_per_sample(net, patch, self.info.task)
        batch = max(self.min_batch_size, int(self.budget_model.limit // max(cost, 1e-12)))
        batch = int(min(batch, max(base.batch_size, self.min_batch_size) * 8, 256))
        cfg = ConfigurationPlan(
            name=name, dim=dim, spacing=list(base.spacing), median_shape=median, patch_size=patch, batch_size=batch,
            normalization=list(base.normalization), network=net,
            separate_z_resampling=base.separate_z_resampling, anisotropy_threshold=base.anisotropy_threshold,
            foreground_oversampling=base.foreground_oversampling, data_identifier=base.data_name,
            mirror_axes=list(base.axes_to_mirror()), mirror_axes_reason=base.mirror_axes_reason)
        self.budget_model.annotate(cfg, self.info.task)
        return cfg

    def feature_sizes(self, n_stages: int, dim: int, base: int | None = None) -> list[int]:
        b, mx = self.features[(self.device, dim)]
        b = base or b
        return [min(b * 2 ** i, mx) for i in range(n_stages)]

    def network_for(self, dim: int, spacing: list[float], patch: list[int], base: int | None = None
                    ) -> tuple[NetworkPlan, list[int], list[int]]:
        topo = plan_topology(spacing, patch, self.min_feature_map_size, self.max_stages)
        n = topo.n_stages
        enc = EncoderPlan(
            kind="plain",
            features_per_stage=self.feature_sizes(n, dim, base),
            kernel_sizes=topo.kernel_sizes,
            strides=topo.strides,
            n_conv_per_stage=[self.n_conv_per_stage] * n,
            norm="instance",
            nonlin="leaky_relu",
        )
        net = NetworkPlan(
            dim=dim,
            in_channels=self.info.num_input_channels,
            num_classes=self.info.num_classes,
            encoder=enc,
            decoder=DecoderPlan(n_conv_per_stage=[self.n_conv_per_stage_decoder] * (n - 1), deep_supervision=True),
            head=HeadPlan(pooling=self.head_pooling(), hidden_features=0, dropout=0.0),
        )
        return net, topo.patch_size, topo.divisible_by

    def head_pooling(self) -> str:
        """Pooling of a classification head on an encoder trained here (ImageNet configurations keep
        the global average their weights were trained with).

        ``avg_centre``: the whole map's average and its centre's. A classification case is one
        patch, and what sits at its centre is what a detector proposed or a reader framed; a global
        average alone cannot tell a blob in the centre from the same blob at the border. Measured on
        NODULE_FPR (documentation/plans.md, ``benchmarks/centre_vs_whole_patch.py``): whole-patch
        intensity statistics rank the test candidates at or below chance (ROC AUC 0.37-0.53; the
        patch's mean intensity 0.57 on the training candidates, 0.37 on the test ones), the same
        statistics at the centre at 0.75-0.80; Scratch with a global-average head ranked the test
        candidates at AUC 0.36-0.79 (mean 0.53) in seven quick-budget cells, with this head at
        0.39-0.85 (mean 0.67) in the same cells."""
        return "avg_centre" if self.info.task == "classification" else "avg"

    def initial_patch(self, spacing: list[float], median_shape: list[int], dim: int) -> list[int]:
        if self.info.task == "classification":
            return list(median_shape)  # the whole case
        inv = 1.0 / np.asarray(spacing, dtype=float)
        scaled = inv * (self.initial_patch_volume[dim] / np.prod(inv)) ** (1.0 / dim)
        return [int(min(round(a), b)) for a, b in zip(scaled, median_shape)]

    def plan_configuration(self, name: str, spacing: list[float], median_shape: list[int],
                           samples_per_case: int = 1) -> ConfigurationPlan:
        dim = len(spacing)
        task = self.info.task
        patch = self.initial_patch(spacing, median_shape, dim)
        base = None
        net, patch, divisible = self.network_for(dim, spacing, patch, base)
        min_patch = [max(2 * self.min_feature_map_size, 8)] * dim
        cost = self.budget_model.cost_per_sample(net, patch, task)
        while cost * self.min_batch_size > self.budget_model.limit:
            ratios = [p / m for p, m in zip(patch, median_shape)]
            order = np.argsort(ratios)[::-1]
            axis = next((int(a) for a in order if patch[a] - divisible[a] >= min_patch[a]), None)
            if axis is None:
                # the smallest sensible patch is still too expensive: thin the network instead
                b, _ = self.features[(self.device, dim)]
                current = net.encoder.features_per_stage[0]
                if current <= 4:
                    log.warning("configuration %s: even the smallest network exceeds the budget", name)
                    break
                base = max(4, current // 2)
                net, patch, divisible = self.network_for(dim, spacing, patch, base)
                cost = self.budget_model.cost_per_sample(net, patch, task)
                continue
            trial = list(patch)
            trial[axis] -= divisible[axis]
            net, patch, divisible = self.network_for(dim, spacing, trial, base)
            cost = self.budget_model.cost_per_sample(net, patch, task)
        batch = max(self.min_batch_size, int(self.budget_model.limit // max(cost, 1e-12)))
        # cap: a batch covers at most 5 % of the dataset's voxels (and never more cases than exist)
        n_cases = max(1, int(self.fp["num_training_cases"]))
        dataset_voxels = float(np.prod(median_shape)) * n_cases * samples_per_case
        cap = max(self.min_batch_size, int(self.max_batch_fraction_of_dataset * dataset_voxels / float(np.prod(patch))))
        batch = int(min(batch, cap, max(self.min_batch_size, 256)))
        cfg = ConfigurationPlan(
            name=name,
            dim=dim,
            spacing=[float(s) for s in spacing],
            median_shape=[int(s) for s in median_shape],
            patch_size=[int(p) for p in patch],
            batch_size=batch,
            normalization=self.info.normalization_schemes(),
            network=net,
            separate_z_resampling=self.separate_z(spacing),
            anisotropy_threshold=self.anisotropy_threshold,
            foreground_oversampling=0.33 if task == "segmentation" else 0.0,
        )
        cfg.mirror_axes, cfg.mirror_axes_reason = self.mirror_axes(dim)
        self.budget_model.annotate(cfg, task)
        return cfg

    def separate_z(self, spacing: list[float]) -> bool:
        """Resample the low-resolution axis separately when the data is anisotropic (as nnU-Net)."""
        if self.dim != 3:
            return False
        orig = np.asarray(self.fp["median_spacing"], dtype=float)
        return bool(max(orig) / min(orig) > self.anisotropy_threshold
                    or max(spacing) / min(spacing) > self.anisotropy_threshold)
