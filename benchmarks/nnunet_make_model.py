"""Build an nnU-Net v2 model folder whose 3d_fullres network matches a selfconfig plan.

Runs with the nnU-Net virtualenv's python (it imports nnunetv2, never selfconfig), called by
bench_predict.py. Why: to compare prediction speed, both tools must run the same U-Net on the same
patch. We take the nnUNetPlans.json that nnU-Net's own planner wrote for Dataset501 (so every key
nnU-Net expects is present) and overwrite its 3d_fullres configuration with selfconfig's choices:
patch size, spacing, batch size, normalisation scheme and its intensity statistics, resampling
orders, and the PlainConvUNet topology (features, kernels, strides, convolutions per stage,
instance norm, leaky ReLU). The network is built with nnU-Net's own trainer method
(nnUNetTrainer.build_network_architecture, as its predictor does), He-initialised with random
weights, and saved as fold_0/checkpoint_final.pth in nnU-Net's checkpoint format, allowing test-time
mirroring along selfconfig's mirror axes (its plan's ``mirror_axes``, in nnU-Net's axis order), so
both tools run the same 2**len(mirror_axes) mirrorings.

Prints one JSON object: the number of parameters, the sorted list of parameter shapes and the
mirror axes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nnunet_plans  # noqa: E402


def nnunet_configuration(nn_plans: dict, sc_config: dict) -> dict:
    """nnU-Net's 3d_fullres configuration of ``nn_plans`` rewritten to selfconfig's ``sc_config``
    (nnunet_plans.convert_configuration); normalisation without nnU-Net's non-zero mask, because
    selfconfig's intensity statistics are copied in as they are."""
    try:
        cfg, _ = nnunet_plans.convert_configuration(nn_plans, {"configurations": {"selfconfig": sc_config}},
                                                    "selfconfig")
    except nnunet_plans.ConversionError as e:
        sys.exit(str(e))
    cfg["use_mask_for_norm"] = [False] * len(cfg["normalization_schemes"])
    return cfg


def mirror_axes(nn_plans: dict, sc_config: dict) -> list[int]:
    """selfconfig's mirror axes (every axis when its plan predates ``mirror_axes``) in the axis
    order of ``nn_plans`` (after its ``transpose_forward``)."""
    dim = len(sc_config["patch_size"])
    axes = sc_config.get("mirror_axes")
    axes = list(range(dim)) if axes is None else [int(a) for a in axes]
    return nnunet_plans.nnunet_mirror_axes(axes, list(nn_plans.get("transpose_forward", range(dim))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--selfconfig-plans", required=True, type=Path, help="selfconfig plans.json")
    p.add_argument("--selfconfig-configuration", default="3d")
    p.add_argument("--nnunet-preprocessed", required=True, type=Path,
                   help="nnUNet_preprocessed/Dataset501_... holding nnUNetPlans.json and dataset_fingerprint.json")
    p.add_argument("--dataset-json", required=True, type=Path, help="the nnU-Net raw dataset.json")
    p.add_argument("--model-dir", required=True, type=Path,
                   help="nnUNet_results/Dataset501_.../nnUNetTrainer__nnUNetPlans__3d_fullres (recreated)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    sc_plans = json.loads(args.selfconfig_plans.read_text())
    sc_config = sc_plans["configurations"][args.selfconfig_configuration]
    plans = json.loads((args.nnunet_preprocessed / "nnUNetPlans.json").read_text())
    dataset_json = json.loads(args.dataset_json.read_text())
    axes = mirror_axes(plans, sc_config)
    plans["configurations"] = {"3d_fullres": nnunet_configuration(plans, sc_config)}
    # the same intensity statistics as selfconfig's, so both normalise the same way
    plans["foreground_intensity_properties_per_channel"] = sc_plans["intensity_properties"]

    if args.model_dir.exists():
        shutil.rmtree(args.model_dir)
    (args.model_dir / "fold_0").mkdir(parents=True)
    (args.model_dir / "plans.json").write_text(json.dumps(plans, indent=2))
    (args.model_dir / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    shutil.copyfile(args.nnunet_preprocessed / "dataset_fingerprint.json", args.model_dir / "dataset_fingerprint.json")

    torch.manual_seed(args.seed)
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    n_in = determine_num_input_channels(pm, cm, dataset_json)
    n_out = pm.get_label_manager(dataset_json).num_segmentation_heads
    network = nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)
    checkpoint = {
        "network_weights": network.state_dict(),
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": None,
        "_best_ema": None,
        "current_epoch": 0,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset_json},
        "trainer_name": "nnUNetTrainer",
        # nnU-Net's trainer would allow every axis of an isotropic-enough 3D plan; selfconfig's
        # plan leaves out an axis along which two classes are mirror images: the predictor mirrors
        # these (None: none; nnU-Net's predictor fails on an empty tuple)
        "inference_allowed_mirroring_axes": tuple(axes) or None,
    }
    torch.save(checkpoint, args.model_dir / "fold_0" / "checkpoint_final.pth")
    shapes = sorted([list(t.shape) for t in network.parameters()])
    print(json.dumps({"parameters": int(sum(t.numel() for t in network.parameters())),
                      "parameter_shapes": shapes, "patch_size": list(cm.patch_size), "mirror_axes": axes,
                      "network_class": cm.network_arch_class_name,
                      "arch_kwargs": plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
