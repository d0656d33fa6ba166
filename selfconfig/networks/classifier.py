"""Classification network: the shared encoder -> its last feature map -> global pooling ->
[hidden linear -> nonlin -> dropout] -> dropout -> ``head`` (linear, ``num_classes`` outputs).

For ImageNet encoders the last feature map is the encoder's final feature (EfficientNet-Lite0:
the 1280-channel ``conv_head``; ResNet: layer4). Groups: ``encoder.*``, ``hidden.*`` (empty
without hidden layers) and ``head.*``. A WGAN critic is this network with one output.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from selfconfig.errors import PlansError
from selfconfig.networks.base import StagedEncoder, groups_by_prefix
from selfconfig.networks.blocks import POOLINGS, global_pool, nonlin_layer, pooled_features
from selfconfig.networks.encoders import build_encoder
from selfconfig.networks.init import init_weights_he
from selfconfig.plans import HeadPlan, NetworkPlan


class ClassificationNetwork(nn.Module):
    def __init__(self, encoder: StagedEncoder, head: HeadPlan, num_outputs: int, nonlin: str = "relu"):
        super().__init__()
        if head.pooling not in POOLINGS:
            raise PlansError(f"unknown head pooling {head.pooling!r} (known: {', '.join(POOLINGS)}); fix plans.json")
        if not 0.0 <= head.dropout < 1.0:
            raise PlansError(f"head.dropout must be in [0, 1), got {head.dropout}; fix plans.json")
        self.dim = encoder.dim
        self.in_channels = encoder.in_channels
        self.num_classes = num_outputs
        self.pooling = head.pooling
        self.encoder = encoder
        features = pooled_features(head.pooling, encoder.out_channels[-1])
        if head.hidden_features > 0:
            self.hidden = nn.Sequential(nn.Linear(features, head.hidden_features), nonlin_layer(nonlin),
                                        nn.Dropout(head.dropout))
            features = head.hidden_features
        else:
            self.hidden = None
        self.dropout = nn.Dropout(head.dropout) if head.dropout > 0 else nn.Identity()
        self.head = nn.Linear(features, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled last encoder feature map, (B, C) or (B, 2C) (``avg_centre``)."""
        return global_pool(self.pooling, self.encoder(x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        if self.hidden is not None:
            z = self.hidden(z)
        return self.head(self.dropout(z))

    def parameter_groups(self) -> dict[str, list[str]]:
        return groups_by_prefix(self, {"stem": ("encoder.stem.",), "encoder": ("encoder.",),
                                       "hidden": ("hidden.",), "head": ("head.",)})


def build_classification_network(plan: NetworkPlan) -> ClassificationNetwork:
    """Classifier of ``plan`` (``plan.num_classes`` logits) with He-initialised weights."""
    net = ClassificationNetwork(build_encoder(plan), plan.head, plan.num_classes, plan.encoder.nonlin)
    return init_weights_he(net)
