"""Tiny plans shared by the network tests (3 stages, features 4-8-16)."""

from __future__ import annotations

import pytest

from selfconfig.plans import DecoderPlan, EncoderPlan, HeadPlan, NetworkPlan


def plain_plan(dim: int = 3, in_channels: int = 1, num_classes: int = 3, norm: str = "instance",
               deep_supervision: bool = True, hidden: int = 0) -> NetworkPlan:
    return NetworkPlan(
        dim=dim,
        in_channels=in_channels,
        num_classes=num_classes,
        encoder=EncoderPlan(
            kind="plain",
            features_per_stage=[4, 8, 16],
            kernel_sizes=[[3] * dim, [3] * dim, [3] * dim],
            strides=[[1] * dim, [2] * dim, [2] * dim],
            n_conv_per_stage=[2, 2, 2],
            norm=norm,
        ),
        decoder=DecoderPlan(n_conv_per_stage=[2, 2], deep_supervision=deep_supervision),
        head=HeadPlan(hidden_features=hidden, dropout=0.1 if hidden else 0.0),
    )


@pytest.fixture
def plan3d() -> NetworkPlan:
    return plain_plan(3)


@pytest.fixture
def plan2d() -> NetworkPlan:
    return plain_plan(2)
