"""Give nnU-Net v2 selfconfig's network: one selfconfig plans configuration as an nnU-Net plans configuration.

For the equal-iteration comparison both frameworks must train the same network on the same voxels.
This script reads selfconfig's ``plans.json`` (written by ``selfconfig_plan_and_preprocess``) and
nnU-Net's ``nnUNetPlans.json`` (written by ``nnUNetv2_plan_and_preprocess`` or
``nnUNetv2_extract_fingerprint`` + ``nnUNetv2_plan_experiment``) and adds one configuration to the
latter (default ``3d_selfconfig``), a copy of nnU-Net's ``3d_fullres`` (so every key nnU-Net reads is
present and its own choices stay where selfconfig has none) with selfconfig's

* target spacing, patch size, batch size, median shape (at that spacing);
* normalisation scheme per channel (``ct`` -> CTNormalization with nnU-Net's own intensity statistics,
  ``zscore`` -> ZScoreNormalization, ...); ``use_mask_for_norm`` stays nnU-Net's decision;
* image / label resampling orders and separate-z resampling;
* network: dynamic_network_architectures' PlainConvUNet with the same stages, features, kernels,
  strides, convolutions per stage (encoder and decoder), instance/batch norm, nonlinearity, conv bias.

What cannot be matched (nnU-Net's trainer always trains with deep supervision and samples a third
of each batch at the foreground; its intensity statistics are its own fingerprint's) is listed in
the report's ``unmatched``. Standard library only: it runs with selfconfig's python and never
imports nnU-Net; nnU-Net then preprocesses the configuration (``nnUNetv2_preprocess -c 3d_selfconfig``).

    python benchmarks/nnunet_plans.py --selfconfig-plans PRE/MNI152_TISSUE/plans.json \\
        --nnunet-plans nnUNet_preprocessed/Dataset601_MNI152_TISSUE/nnUNetPlans.json [-c 3d] [--name 3d_selfconfig]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

NORMALIZATION = {"ct": "CTNormalization", "zscore": "ZScoreNormalization", "rgb": "RGBTo0_1Normalization",
                 "none": "NoNormalization"}
NORM_OP = {("instance", 3): "torch.nn.modules.instancenorm.InstanceNorm3d",
           ("instance", 2): "torch.nn.modules.instancenorm.InstanceNorm2d",
           ("batch", 3): "torch.nn.modules.batchnorm.BatchNorm3d",
           ("batch", 2): "torch.nn.modules.batchnorm.BatchNorm2d"}
NONLIN = {"leaky_relu": "torch.nn.LeakyReLU", "relu": "torch.nn.ReLU", "relu6": "torch.nn.ReLU6"}
#: nnU-Net's trainer: a third of each batch is forced to contain foreground (oversample_foreground_percent)
NNUNET_FOREGROUND_OVERSAMPLING = 0.33


def nnunet_mirror_axes(sc_axes: list[int], transpose_forward: list[int]) -> list[int]:
    """selfconfig's mirror axes (image array order) as nnU-Net's (its transposed order)."""
    return [i for i, t in enumerate(transpose_forward) if t in set(sc_axes)]


class ConversionError(ValueError):
    """The selfconfig configuration has no nnU-Net counterpart (e.g. a ResNet encoder)."""


def permute(values: list, transpose_forward: list[int]) -> list:
    """selfconfig's axis order (the image array's, z y x) in nnU-Net's transposed order: nnU-Net
    stores spacing, patch, kernels and strides after ``transpose_forward``."""
    return [values[t] for t in transpose_forward]


def convert_configuration(nn_plans: dict, sc_plans: dict, sc_configuration: str,
                          base: str = "3d_fullres") -> tuple[dict, list[str]]:
    """(nnU-Net configuration, what could not be matched) for selfconfig's ``sc_configuration``."""
    sc = sc_plans["configurations"][sc_configuration]
    net = sc["network"]
    enc, dec = net["encoder"], net.get("decoder") or {}
    dim = int(net["dim"])
    if enc.get("kind", "plain") != "plain":
        raise ConversionError(f"selfconfig's {sc_configuration} has a {enc['kind']!r} encoder; nnU-Net's "
                              f"PlainConvUNet matches only the plain one")
    if sc.get("previous_stage"):
        raise ConversionError(f"{sc_configuration} is a cascade stage; convert a configuration without previous_stage")
    if base not in nn_plans["configurations"]:
        raise ConversionError(f"nnU-Net's plans have no {base!r} configuration to start from "
                              f"(it has {sorted(nn_plans['configurations'])})")
    base_cfg = nn_plans["configurations"][base]
    if "inherits_from" in base_cfg:
        raise ConversionError(f"{base!r} inherits from another configuration; start from a complete one")
    tf = list(nn_plans.get("transpose_forward", list(range(dim))))
    if len(tf) != dim:
        raise ConversionError(f"nnU-Net's transpose_forward {tf} does not fit a {dim}D configuration")
    n_stages = len(enc["features_per_stage"])
    norm = NORM_OP.get((enc.get("norm", "instance"), dim))
    nonlin = NONLIN.get(enc.get("nonlin", "leaky_relu"))
    if norm is None or nonlin is None:
        raise ConversionError(f"norm {enc.get('norm')!r} / nonlinearity {enc.get('nonlin')!r} have no nnU-Net op")
    schemes = []
    for s in sc["normalization"]:
        if s not in NORMALIZATION:
            raise ConversionError(f"normalisation {s!r} has no nnU-Net scheme")
        schemes.append(NORMALIZATION[s])
    n_channels = len(base_cfg.get("normalization_schemes", schemes))
    if len(schemes) != n_channels:
        raise ConversionError(f"selfconfig normalises {len(schemes)} channel(s), nnU-Net's plans {n_channels}")

    cfg = copy.deepcopy(base_cfg)
    cfg["data_identifier"] = f"{nn_plans.get('plans_name', 'nnUNetPlans')}_SELFCONFIG_{sc_configuration}"
    cfg["patch_size"] = [int(v) for v in permute(sc["patch_size"], tf)]
    cfg["spacing"] = [float(v) for v in permute(sc["spacing"], tf)]
    cfg["batch_size"] = int(sc["batch_size"])
    cfg["median_image_size_in_voxels"] = [float(v) for v in permute(sc["median_shape"], tf)]
    cfg["normalization_schemes"] = schemes
    # use_mask_for_norm: nnU-Net's own decision (crop to non-zero shrank the images) stays
    separate = bool(sc.get("separate_z_resampling", False))
    for key, order in (("resampling_fn_data_kwargs", sc.get("resample_order_image", 3)),
                       ("resampling_fn_seg_kwargs", sc.get("resample_order_label", 1))):
        cfg[key] = {**cfg.get(key, {}), "order": int(order), "force_separate_z": separate}
    cfg["resampling_fn_probabilities_kwargs"] = {**cfg.get("resampling_fn_probabilities_kwargs", {}),
                                                 "force_separate_z": separate}
    dec_convs = dec.get("n_conv_per_stage") or [2] * (n_stages - 1)
    cfg["architecture"] = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [int(f) for f in enc["features_per_stage"]],
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": [[int(k) for k in permute(ks, tf)] for ks in enc["kernel_sizes"]],
            "strides": [[int(s) for s in permute(st, tf)] for st in enc["strides"]],
            "n_conv_per_stage": [int(n) for n in enc["n_conv_per_stage"]],
            "n_conv_per_stage_decoder": [int(n) for n in dec_convs],
            "conv_bias": True,
            "norm_op": norm,
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": nonlin,
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    unmatched = []
    if not dec.get("deep_supervision", True):
        unmatched.append("deep supervision: selfconfig trains without it, nnU-Net's trainer always with it")
    fg = float(sc.get("foreground_oversampling", 0.33))
    if abs(fg - NNUNET_FOREGROUND_OVERSAMPLING) > 1e-6:
        unmatched.append(f"foreground oversampling: selfconfig {fg:g}, nnU-Net's trainer {NNUNET_FOREGROUND_OVERSAMPLING:g}")
    if "ct" in sc["normalization"]:
        unmatched.append("CT intensity statistics: each framework clips and scales with its own fingerprint's "
                         "foreground percentiles, mean and std")
    if any(s == "zscore" for s in sc["normalization"]) and any(base_cfg.get("use_mask_for_norm", [])):
        unmatched.append("z-score normalisation inside nnU-Net's non-zero mask (use_mask_for_norm), selfconfig "
                         "over its own mask rule")
    sc_axes = sc.get("mirror_axes")
    sc_axes = list(range(dim)) if sc_axes is None else [int(a) for a in sc_axes]
    if sorted(sc_axes) != list(range(dim)):
        unmatched.append(f"mirroring: selfconfig mirrors only axes {sc_axes} ({sc.get('mirror_axes_reason') or 'its plan'}), "
                         f"nnU-Net's trainer every axis unless told (nnunet_bench.py --mirror-axes "
                         f"{' '.join(str(a) for a in nnunet_mirror_axes(sc_axes, tf))})")
    if tf != list(range(dim)):
        unmatched.append(f"axes: nnU-Net transposes them ({tf}); spacing, patch, kernels and strides were permuted")
    return cfg, unmatched


def add_configuration(nnunet_plans: Path, selfconfig_plans: Path, sc_configuration: str | None = None,
                      name: str = "3d_selfconfig", base: str = "3d_fullres") -> dict:
    """Add ``name`` to nnU-Net's plans file (rewritten in place; other configurations unchanged) and
    return the report (also written next to it as ``<name>_conversion.json``)."""
    nn_plans = json.loads(Path(nnunet_plans).read_text())
    sc_plans = json.loads(Path(selfconfig_plans).read_text())
    sc_configuration = sc_configuration or sc_plans.get("recommended_configuration") or "3d"
    cfg, unmatched = convert_configuration(nn_plans, sc_plans, sc_configuration, base)
    nn_plans["configurations"][name] = cfg
    Path(nnunet_plans).write_text(json.dumps(nn_plans, indent=4) + "\n")
    sc = sc_plans["configurations"][sc_configuration]
    report = {"nnunet_plans": str(nnunet_plans), "nnunet_configuration": name, "based_on": base,
              "selfconfig_plans": str(selfconfig_plans), "selfconfig_configuration": sc_configuration,
              "spacing": cfg["spacing"], "patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"],
              "features_per_stage": cfg["architecture"]["arch_kwargs"]["features_per_stage"],
              "normalization": cfg["normalization_schemes"], "use_mask_for_norm": cfg.get("use_mask_for_norm"),
              "selfconfig_estimated_iteration_seconds": sc.get("estimated_iteration_seconds"),
              "selfconfig_mirror_axes": sc.get("mirror_axes"),
              "selfconfig_mirror_axes_as_nnunet": nnunet_mirror_axes(
                  list(range(len(cfg["patch_size"]))) if sc.get("mirror_axes") is None else sc["mirror_axes"],
                  list(nn_plans.get("transpose_forward", range(len(cfg["patch_size"]))))),
              "unmatched": unmatched}
    Path(nnunet_plans).with_name(f"{name}_conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--selfconfig-plans", required=True, type=Path)
    p.add_argument("--nnunet-plans", required=True, type=Path, help="nnUNetPlans.json (rewritten with the new configuration)")
    p.add_argument("-c", "--configuration", help="selfconfig configuration (default: its recommended one)")
    p.add_argument("--name", default="3d_selfconfig", help="the nnU-Net configuration's name")
    p.add_argument("--base", default="3d_fullres", help="nnU-Net configuration to copy the other keys from")
    args = p.parse_args(argv)
    try:
        report = add_configuration(args.nnunet_plans, args.selfconfig_plans, args.configuration, args.name, args.base)
    except ConversionError as e:
        sys.exit(f"cannot convert: {e}")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
