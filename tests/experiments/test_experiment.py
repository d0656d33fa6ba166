from __future__ import annotations

import pandas as pd
import pytest

from selfconfig.experiments.grid import run_experiment

TINY = {"epochs": 1, "iters_per_epoch": 2, "val_iters": 1, "num_workers": 0, "pretrain_epochs": 1,
        "pretrain_iters_per_epoch": 2, "tta": False, "precision": "fp32"}


@pytest.mark.slow
def test_experiment_grid_writes_outputs_and_resumes(planned, roots):
    planned("EXP", task="segmentation", dim=3, n_train=8, configurations=["3d"])
    args = dict(budget="quick", roots=roots, progress=False, overrides=TINY)
    res = run_experiment("EXP", ["Scratch", "SurrogateFlip"], [0.5, 1.0], [0, 1], **args)
    assert res.results_csv.is_file() and res.summary_md.is_file() and res.figure.is_file()
    assert res.figure.stat().st_mode & 0o044, "the figure is readable by others, like every other output"
    df = pd.read_csv(res.results_csv)
    # 2 strategies x 2 fractions x 2 folds x {val, test}
    assert len(df) == 16
    assert set(df["split"]) == {"val", "test"} and set(df["metric"]) == {"mean_dice"}
    assert df["value"].between(0, 1).all()
    text = res.summary_md.read_text()
    assert "Paired comparison with Scratch" in text and "SurrogateFlip" in text
    # one pre-training served every cell
    pre = list((roots.results / "EXP" / "pretrain").glob("*/checkpoint.pt"))
    assert len(pre) == 1
    finals = sorted((roots.results / "EXP").glob("*__quick/frac_*/fold_*/checkpoint_final.pt"))
    assert len(finals) == 8
    stamps = {p: p.stat().st_mtime_ns for p in finals}
    res2 = run_experiment("EXP", ["Scratch", "SurrogateFlip"], [0.5, 1.0], [0, 1], **args)
    assert {p: p.stat().st_mtime_ns for p in finals} == stamps  # nothing retrained
    assert len(pd.read_csv(res2.results_csv)) == 16


def test_imagenet_on_3d_is_refused_clearly(planned, roots):
    from selfconfig.errors import ConfigurationError

    planned("EXP3", task="segmentation", dim=3, configurations=["3d"])
    with pytest.raises(ConfigurationError, match="2d_imagenet"):
        run_experiment("EXP3", ["Scratch", "ImageNet"], [1.0], [0], roots=roots, progress=False, overrides=TINY)
