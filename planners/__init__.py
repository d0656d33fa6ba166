"""The shipped planners. Each is an entry point of the group ``selfconfig.planners`` in
pyproject.toml, found by ``-pl NAME`` exactly like a user's own (an entry point of their package,
or ``-pl my_module:MyPlanner``; see documentation/extending.md). Importing this package is for
subclassing them."""

from __future__ import annotations

from planners.default import DefaultPlanner
from planners.resnet import ResNet18Planner, ResNet34Planner, ResNet50Planner

__all__ = ["DefaultPlanner", "ResNet18Planner", "ResNet34Planner", "ResNet50Planner"]
