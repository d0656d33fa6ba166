"""--logger tensorboard: the event file holds the losses, metrics, learning rate and the progress
figure; without the extra the flag fails in one line that says what to install."""

from __future__ import annotations

import struct

import pytest

from selfconfig.cli import pretrain as pretrain_cli
from selfconfig.cli import train as train_cli
from selfconfig.cli.common import run

pytest.importorskip("tensorboardX")


def read_events(folder) -> list:
    """Every Event record of the TFRecord event files in ``folder`` (no TensorBoard needed)."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i:i + 8])
            payload = data[i + 12:i + 12 + length]
            i += 12 + length + 4
            ev = Event()
            ev.ParseFromString(payload)
            events.append(ev)
    return events


def scalars(events) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for ev in events:
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def images(events) -> list[str]:
    return [v.tag for ev in events for v in ev.summary.value if v.HasField("image")]


def test_train_records_to_tensorboard(planned, roots, capsys):
    planned("TB", task="segmentation", dim=3, shape=(8, 16, 16), n_train=4, n_test=0, n_un=0)
    code = run(train_cli.main, ["-d", "TB", "--epochs", "2", "--iters-per-epoch", "2", "--val-iters", "1",
                                "--num-workers", "0", "--no-final-validation", "--logger", "tensorboard",
                                "--no-progress"], prog="selfconfig_train")
    assert code == 0, capsys.readouterr().err
    run_dir = roots.results / "TB" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_0"
    events = read_events(run_dir / "tensorboard")
    s = scalars(events)
    assert [step for step, _ in s["train/loss"]] == [1, 2]
    assert "val/loss" in s and "lr" in s and "val/dice" in s
    lrs = [v for _, v in s["lr"]]
    assert lrs[0] > lrs[1] > 0  # the poly schedule decays
    assert images(events) == ["progress"]  # drawn at the last epoch


def test_pretrain_records_to_tensorboard(planned, roots, capsys):
    planned("TBP", task="segmentation", dim=3, shape=(8, 16, 16), n_train=3, n_test=0, n_un=1)
    code = run(pretrain_cli.main, ["-d", "TBP", "-tr", "SurrogateFlip", "--epochs", "1", "--iters-per-epoch", "1",
                                   "--val-iters", "1", "--num-workers", "0", "--logger", "tensorboard",
                                   "--no-progress"], prog="selfconfig_pretrain")
    assert code == 0, capsys.readouterr().err
    folder = roots.results / "TBP" / "pretrain" / "SurrogateFlip__selfconfigPlans__3d" / "tensorboard"
    s = scalars(read_events(folder))
    assert "train/loss" in s and "val/accuracy" in s


def test_missing_extra_is_one_line(planned, roots, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboardX" else real(name, *a))
    capsys.readouterr()
    code = run(train_cli.main, ["-d", "NONE", "--logger", "tensorboard", "--no-progress"], prog="selfconfig_train")
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'selfconfig[tracking]'" in lines[0], err


def test_every_training_command_has_the_flag():
    from selfconfig.cli import experiment as experiment_cli

    for cli in (train_cli, pretrain_cli, experiment_cli):
        args = cli.build_parser().parse_args(["-tr", "SurrogateFlip", "--logger", "tensorboard"])
        assert args.logger == ["tensorboard"]
