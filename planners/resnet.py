"""The DefaultPlanner with a ResNet as the ImageNet-compatible encoder (bring torchvision
weights with ``--pretrained-weights``)."""

from __future__ import annotations

from planners.default import DefaultPlanner


class ResNet18Planner(DefaultPlanner):
    """Like DefaultPlanner, with ResNet-18 as the ImageNet-compatible encoder."""

    plans_name = "selfconfigPlans_resnet18"
    imagenet_encoder = "resnet18"


class ResNet34Planner(ResNet18Planner):
    plans_name = "selfconfigPlans_resnet34"
    imagenet_encoder = "resnet34"


class ResNet50Planner(ResNet18Planner):
    plans_name = "selfconfigPlans_resnet50"
    imagenet_encoder = "resnet50"
