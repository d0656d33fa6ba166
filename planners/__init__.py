"""Planner classes. ``-pl NAME`` picks one by name from this registry, or ``-pl module:Class``
loads a user's planner without editing the installed package."""

from __future__ import annotations

import importlib

from planners.default import DefaultPlanner

PLANNERS: dict[str, type] = {"DefaultPlanner": DefaultPlanner}


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
