"""Pretext networks: the shared encoder + global average pooling + ``head`` (k outputs).

Rotation (3 classes), flip (3 sigmoid outputs) and similar surrogate tasks train this network;
its ``encoder.*`` tensors are then transferred to the target network unchanged, because every
network builds the same encoder from the same plan.
"""

from __future__ import annotations

from selfconfig.networks.classifier import ClassificationNetwork
from selfconfig.networks.encoders import build_encoder
from selfconfig.networks.init import init_weights_he
from selfconfig.plans import HeadPlan, NetworkPlan


class PretextNetwork(ClassificationNetwork):
    """encoder -> global average pooling -> linear(num_outputs) named ``head``."""


def build_pretext_network(plan: NetworkPlan, num_outputs: int) -> PretextNetwork:
    if num_outputs < 1:
        raise ValueError(f"a pretext network needs at least one output, got {num_outputs}")
    net = PretextNetwork(build_encoder(plan), HeadPlan(pooling="avg"), num_outputs, plan.encoder.nonlin)
    return init_weights_he(net)
