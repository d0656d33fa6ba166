"""Trainers and planners are found through entry points: the shipped ones (declared in
pyproject.toml) exactly like an installed third-party package's; ``module:Class`` and
``file.py:Class`` load unregistered ones; a missing registration is one clear line."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import entry_points

import pytest

from selfconfig import plugins
from selfconfig.errors import ConfigurationError, SelfconfigError, TrainerNotFoundError
from selfconfig.planning import available_planners, get_planner
from selfconfig.training.registry import available_trainers, get_trainer
from selfconfig.training.trainer import Trainer

SIX = {"ImageNet", "Scratch", "SurrogateColor", "SurrogateFlip", "SurrogateRotation", "SurrogateWGAN"}
PLANNERS = {"DefaultPlanner", "ResNet18Planner", "ResNet34Planner", "ResNet50Planner"}


def test_the_shipped_plugins_are_entry_points_of_the_installed_package():
    trainers = {ep.name: ep for ep in entry_points(group="selfconfig.trainers")}
    planners = {ep.name: ep for ep in entry_points(group="selfconfig.planners")}
    assert SIX <= set(trainers) and PLANNERS <= set(planners)
    assert all(trainers[n].value.startswith("trainers.") for n in SIX)
    assert all(planners[n].value.startswith("planners.") for n in PLANNERS)
    assert SIX <= set(available_trainers()) and PLANNERS <= set(available_planners())
    for n in SIX:
        cls = get_trainer(n)
        assert issubclass(cls, Trainer) and cls.name == n and cls.__module__.startswith("trainers.")
    assert get_planner(None).__name__ == "DefaultPlanner"
    assert get_planner("ResNet34Planner").imagenet_encoder == "resnet34"


def _install_third_party(tmp_path, monkeypatch) -> None:
    """A package installed the way pip leaves one: its module and a dist-info folder whose
    entry_points.txt registers a trainer and a planner (the same way pyproject.toml does)."""
    (tmp_path / "thirdparty_sc.py").write_text(textwrap.dedent('''
        from planners import DefaultPlanner
        from trainers import Scratch

        class Tuned(Scratch):
            description = "a third party's trainer"

        class Wide(DefaultPlanner):
            plans_name = "widePlans"
    '''))
    info = tmp_path / "thirdparty_sc-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-sc\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[selfconfig.trainers]\nTunedScratch = thirdparty_sc:Tuned\n\n"
                                           "[selfconfig.planners]\nWidePlanner = thirdparty_sc:Wide\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "thirdparty_sc", raising=False)


def test_a_third_party_package_registers_the_same_way(tmp_path, monkeypatch):
    _install_third_party(tmp_path, monkeypatch)
    assert "TunedScratch" in available_trainers() and SIX <= set(available_trainers())
    cls = get_trainer("TunedScratch")
    assert cls.name == "TunedScratch" and issubclass(cls, get_trainer("Scratch"))
    assert get_trainer("Scratch").name == "Scratch"  # the class it derives from keeps its own name
    assert get_planner("WidePlanner").plans_name == "widePlans"


def test_a_planner_from_a_file_path(tmp_path):
    path = tmp_path / "my_planners.py"
    path.write_text("from planners import DefaultPlanner\nclass Tiny(DefaultPlanner):\n    plans_name = 'tinyPlans'\n")
    assert get_planner(f"{path}:Tiny").plans_name == "tinyPlans"
    with pytest.raises(ConfigurationError, match="defines NoSuch"):
        get_planner(f"{path}:NoSuch")
    path.write_text("def plan():\n    pass\n")
    with pytest.raises(ConfigurationError, match="not a planner class"):
        get_planner(f"{path}:plan")


@pytest.mark.parametrize("lookup", [lambda: get_trainer("Scratch"), lambda: available_trainers(),
                                    lambda: get_planner("DefaultPlanner")])
def test_missing_entry_points_are_one_clear_line(lookup, monkeypatch):
    """A source checkout that was never installed has no entry points: say so, and how to fix it."""
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    with pytest.raises(SelfconfigError) as e:
        lookup()
    msg = str(e.value)
    assert "\n" not in msg and "not installed" in msg and "pip install -e ." in msg


def test_module_colon_class_needs_no_entry_point(tmp_path, monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    (tmp_path / "mine_sc.py").write_text("from trainers import Scratch\nclass Mine(Scratch):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mine_sc", raising=False)
    assert get_trainer("mine_sc:Mine").name == "Mine"
    assert get_trainer(f"{tmp_path / 'mine_sc.py'}:Mine").name == "Mine"


def test_a_broken_entry_point_is_one_line(tmp_path, monkeypatch):
    _install_third_party(tmp_path, monkeypatch)
    (tmp_path / "thirdparty_sc.py").write_text("raise RuntimeError('half-installed\\nsecond line')\n")
    with pytest.raises(TrainerNotFoundError) as e:
        get_trainer("TunedScratch")
    assert "\n" not in str(e.value) and "half-installed" in str(e.value) and "thirdparty_sc:Tuned" in str(e.value)
