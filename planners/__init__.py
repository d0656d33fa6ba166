"""Planner classes. ``-pl NAME`` picks one by name from this registry, or ``-pl module:Class``
loads a user's planner without editing the installed package."""

from __future__ import annotations

import importlib

from planners.default import DefaultPlanner



class ResNet18Planner(DefaultPlanner):
    """Like DefaultPlanner, with ResNet-18 as the ImageNet-compatible encoder (bring torchvision
    weights with ``--pretrained-weights``)."""

    plans_name = "selfconfigPlans_resnet18"
    imagenet_encoder = "resnet18"


class ResNet34Planner(ResNet18Planner):
    plans_name = "selfconfigPlans_resnet34"
    imagenet_encoder = "resnet34"


class ResNet50Planner(ResNet18Planner):
    plans_name = "selfconfigPlans_resnet50"
    imagenet_encoder = "resnet50"


PLANNERS: dict[str, type] = {c.__name__: c for c in (DefaultPlanner, ResNet18Planner, ResNet34Planner,
                                                    ResNet50Planner)}


def register_planner(cls: type) -> type:
    PLANNERS[cls.__name__] = cls
    return cls


def get_planner(name: str | None) -> type:
    from selfconfig.errors import ConfigurationError

    name = name or "DefaultPlanner"
    if name in PLANNERS:
        return PLANNERS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigurationError(f"planner {name!r} cannot be loaded ({e}); check the module path")
    raise ConfigurationError(f"unknown planner {name!r}; known: {', '.join(sorted(PLANNERS))} (or module:Class)")
