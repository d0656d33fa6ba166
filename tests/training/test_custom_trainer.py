"""A user's own trainer, defined outside the installed package, is found by ``module:Class`` or
``path/to/file.py:Class``, names its run folder and its hooks are used by the shared loop."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from selfconfig.errors import TrainerNotFoundError
from selfconfig.training.api import train
from selfconfig.training.registry import get_trainer

MODULE_TEXT = textwrap.dedent('''
    """A user's trainer: Adam instead of SGD, and a record that the hook ran."""
    from __future__ import annotations

    import json
    import os

    import torch

    from trainers.scratch import Scratch


    class MyTrainer(Scratch):
        description = "Adam (test)"

        def build_optimizer(self, network, hp):
            record = os.environ["MY_TRAINER_RECORD"]
            with open(record, "a") as f:
                f.write(json.dumps({"hook": "build_optimizer", "lr": hp.lr, "module": __name__}) + "\\n")
            return torch.optim.Adam(network.parameters(), lr=1e-3)
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write the user's module into a folder outside the package; forget it afterwards."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("MY_TRAINER_RECORD", str(record))
    names = ("my_sc_trainer", "my_sc_trainer_file")
    for n in names:
        (folder / f"{n}.py").write_text(MODULE_TEXT)
    yield folder, record
    for n in names:
        sys.modules.pop(n, None)


def _calls(record) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.is_file() else []


def _check_run(result, roots, name: str, config: str, record, module: str) -> None:
    run_dir = roots.results / name / f"MyTrainer__selfconfigPlans__{config}" / "frac_1.0" / "fold_0"
    assert result.run_dir == run_dir
    assert (run_dir / "checkpoint_final.pt").is_file()
    calls = _calls(record)
    assert [c["hook"] for c in calls] == ["build_optimizer"]
    # a module path imports under its own name; a file path under a private name (a user file
    # named like an installed module must not replace it)
    assert calls[0]["module"] == module or calls[0]["module"].startswith(f"selfconfig_user_trainers.{module}_")
    ckpt = torch.load(run_dir / "checkpoint_final.pt", weights_only=True)
    assert ckpt["trainer"] == "MyTrainer"
    assert ckpt["trainer_class"].endswith(":MyTrainer")
    # the optimizer that trained is the override's Adam (moment estimates, coupled weight decay),
    # not the default AdamW (decoupled weight decay) nor SGD (momentum buffers)
    opt = ckpt["module"]["optimizer"]
    assert opt["state"] and all("exp_avg" in s and "momentum_buffer" not in s for s in opt["state"].values())
    assert opt["param_groups"][0]["decoupled_weight_decay"] is False


def test_module_colon_class_on_sys_path(user_module, planned, roots, fast_hp, monkeypatch):
    folder, record = user_module
    monkeypatch.syspath_prepend(str(folder))
    planned("TCUST", task="segmentation", dim=2, shape=(32, 32))
    result = train("my_sc_trainer:MyTrainer", "TCUST", fold=0, fraction=1.0,
                   hyperparameters={**fast_hp, "final_validation": False}, roots=roots, progress=False)
    _check_run(result, roots, "TCUST", "2d", record, "my_sc_trainer")
    assert len(result.history["train_loss"]) == 2


def test_path_to_file_colon_class(user_module, planned, roots, fast_hp):
    folder, record = user_module
    planned("TCUSTF", task="classification", dim=2, rgb=True, shape=(32, 32))
    spec = f"{folder / 'my_sc_trainer_file.py'}:MyTrainer"
    result = train(spec, "TCUSTF", fold=0, fraction=1.0, hyperparameters={**fast_hp, "final_validation": False},
                   roots=roots, progress=False)
    _check_run(result, roots, "TCUSTF", "2d", record, "my_sc_trainer_file")

    # the run resumes / extends under the same name
    more = train(spec, "TCUSTF", fold=0, hyperparameters={**fast_hp, "epochs": 3, "final_validation": False},
                 continue_training=True, roots=roots, progress=False)
    assert more.trained and len(more.history["train_loss"]) == 3
    assert [c["hook"] for c in _calls(record)] == ["build_optimizer"] * 2


def test_builtin_trainer_name_is_unchanged_by_subclassing(user_module, monkeypatch):
    """Loading a subclass must not rename the trainer it derives from."""
    folder, _ = user_module
    monkeypatch.syspath_prepend(str(folder))
    cls = get_trainer("my_sc_trainer:MyTrainer")
    assert cls.name == "MyTrainer"
    assert get_trainer("Scratch").name == "Scratch"
    assert issubclass(cls, get_trainer("Scratch"))


@pytest.mark.parametrize("spec", ["no_such_module_xyz:MyTrainer", "my_sc_trainer:NoSuchClass", "NoSuchTrainer",
                                  "{folder}/missing_file.py:MyTrainer"])
def test_unknown_trainer_is_a_clear_error(spec, user_module, monkeypatch):
    folder, _ = user_module
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(TrainerNotFoundError) as e:
        get_trainer(spec.format(folder=folder))
    msg = str(e.value)
    assert "\n" not in msg and spec.split(":")[-1].split("/")[-1] in msg
