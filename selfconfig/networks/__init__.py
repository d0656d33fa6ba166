"""Networks built from plans: one encoder definition shared by the U-Net, the classifier and
every pretext network, ImageNet weight loading, and weight transfer by parameter groups.

Every network has ``encoder`` (a :class:`StagedEncoder`) and ``parameter_groups()`` mapping
"stem", "encoder" (includes the stem), "decoder" (U-Net only) and "head" to state-dict keys.
"""

from __future__ import annotations

from selfconfig.networks.base import StagedEncoder, groups_by_prefix
from selfconfig.networks.classifier import ClassificationNetwork, build_classification_network
from selfconfig.networks.cost import (
    ForwardCost,
    count_parameters,
    estimate_activation_memory_bytes,
    estimate_conv_flops,
    estimate_parameter_count,
    measure_forward_cost,
)
from selfconfig.networks.encoders import build_encoder, decoder_stage_count, imagenet_encoder_layout
from selfconfig.networks.imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    adapt_first_conv,
    default_weights_path,
    inflate_2d_to_3d,
    load_imagenet_encoder_weights,
    map_imagenet_keys,
    read_state_dict,
    to_reference_keys,
)
from selfconfig.networks.init import init_weights_he, init_weights_xavier
from selfconfig.networks.pretext import PretextNetwork, build_pretext_network
from selfconfig.networks.transfer import (
    TransferReport,
    freeze_group,
    group_parameters,
    set_group_trainable,
    transfer_weights,
    unfreeze_group,
)
from selfconfig.networks.unet import SegmentationNetwork, UNetDecoder, build_segmentation_network

__all__ = [
    "ClassificationNetwork",
    "ForwardCost",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PretextNetwork",
    "SegmentationNetwork",
    "StagedEncoder",
    "TransferReport",
    "UNetDecoder",
    "adapt_first_conv",
    "build_classification_network",
    "build_encoder",
    "build_pretext_network",
    "build_segmentation_network",
    "count_parameters",
    "decoder_stage_count",
    "default_weights_path",
    "estimate_activation_memory_bytes",
    "estimate_conv_flops",
    "estimate_parameter_count",
    "freeze_group",
    "group_parameters",
    "groups_by_prefix",
    "imagenet_encoder_layout",
    "inflate_2d_to_3d",
    "init_weights_he",
    "init_weights_xavier",
    "load_imagenet_encoder_weights",
    "map_imagenet_keys",
    "measure_forward_cost",
    "read_state_dict",
    "set_group_trainable",
    "to_reference_keys",
    "transfer_weights",
    "unfreeze_group",
]
