"""selfconfig_find_best_configuration: candidates and ensembles scored on pooled validation cases,
post-processing decided per class, the written predict command works; selfconfig_predict ensembles
several configurations and applies the post-processing file."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
from scipy import ndimage

from selfconfig.cli import find_best_configuration as best_cli
from selfconfig.cli import predict as predict_cli
from selfconfig.cli.common import run
from selfconfig.dataset.geometry import Geometry
from selfconfig.dataset.io import read_label, write_segmentation
from selfconfig.dataset.labels import LabelScheme
from selfconfig.experiments.best_configuration import Member, score_candidate
from selfconfig.inference.postprocessing import apply_postprocessing, keep_largest_component, load_postprocessing
from selfconfig.errors import ConfigurationError
from selfconfig.training.api import train

HP = {"epochs": 1, "iters_per_epoch": 2, "val_iters": 1, "num_workers": 0}


def test_keep_largest_component_only_touches_its_class():
    seg = np.zeros((1, 10, 10), np.uint8)
    seg[0, 1:4, 1:4] = 1  # 9 voxels
    seg[0, 7:9, 7:9] = 1  # 4 voxels: removed
    seg[0, 6, 1] = 2
    seg[0, 8, 1] = 2  # class 2 has two components: untouched when only class 1 is processed
    out = keep_largest_component(seg, 1)
    assert (out == 1).sum() == 9 and out[0, 7:9, 7:9].max() == 0
    assert (out == 2).sum() == 2 and (seg == 1).sum() == 13  # input unchanged
    assert (apply_postprocessing(seg, {"largest_component_classes": [1, 2]}) == 2).sum() == 1


def test_decision_per_class(tmp_path):
    """Class 1: the prediction adds a stray blob -> largest component helps; class 2: the reference
    itself has two parts -> keeping one hurts, so it is not chosen."""
    geom = Geometry(spacing=(2.0, 1.0, 1.0), shape=(4, 16, 16), dim=3, file_ending=".nii.gz")
    ref = np.zeros((4, 16, 16), np.uint8)
    ref[1:3, 2:7, 2:7] = 1
    ref[1:3, 10:13, 2:5] = 2
    ref[1:3, 10:13, 10:13] = 2
    pred = ref.copy()
    pred[1:3, 13:15, 7:9] = 1  # stray false positive of class 1
    member = Member("Scratch", "3d", tmp_path / "run" / "frac_1.0")
    (member.fold_dir("0") / "validation").mkdir(parents=True)
    write_segmentation(pred, geom, member.fold_dir("0") / "validation" / "c1.nii.gz")
    write_segmentation(ref, geom, tmp_path / "c1_ref.nii.gz")
    scheme = LabelScheme.from_labels({"background": 0, "class1": 1, "class2": 2})
    score = score_candidate([member], [("0", "c1", tmp_path / "c1_ref.nii.gz")], scheme)
    assert score["largest_component_classes"] == [1]
    assert score["dice_per_class"][1] < 1.0 and score["dice_per_class_postprocessed"][1] == pytest.approx(1.0)
    assert score["dice_per_class_largest_component"][2] < score["dice_per_class_postprocessed"][2] == 1.0


def test_decision_per_region(tmp_path):
    """BraTS-like nested regions: a stray voxel blob of label 1 lies outside the whole tumour; keeping
    the largest component of the region [1, 2] removes it, and the file records the region."""
    geom = Geometry(spacing=(2.0, 1.0, 1.0), shape=(4, 16, 16), dim=3, file_ending=".nii.gz")
    ref = np.zeros((4, 16, 16), np.uint8)
    ref[1:3, 3:9, 3:9] = 1
    ref[1:3, 5:7, 5:7] = 2
    pred = ref.copy()
    pred[1:3, 12:14, 12:14] = 1
    member = Member("Scratch", "3d", tmp_path / "run" / "frac_1.0")
    (member.fold_dir("0") / "validation").mkdir(parents=True)
    write_segmentation(pred, geom, member.fold_dir("0") / "validation" / "c1.nii.gz")
    write_segmentation(ref, geom, tmp_path / "c1_ref.nii.gz")
    scheme = LabelScheme.from_labels({"background": 0, "whole": [1, 2], "core": [2]}, [1, 2])
    score = score_candidate([member], [("0", "c1", tmp_path / "c1_ref.nii.gz")], scheme)
    assert [1, 2] in score["largest_component_classes"]
    assert score["dice_per_class_postprocessed"][(1, 2)] == pytest.approx(1.0)
    seg = apply_postprocessing(pred, {"largest_component_classes": score["largest_component_classes"]})
    assert np.array_equal(seg, ref)


def test_bad_postprocessing_file_is_refused(tmp_path):
    bad = tmp_path / "pp.json"
    bad.write_text(json.dumps({"largest_component_classes": [1]}))
    with pytest.raises(ConfigurationError, match="not a selfconfig post-processing file"):
        load_postprocessing(bad)


def test_find_best_then_predict_ensemble(planned, roots, capsys, tmp_path):
    planned("BEST", task="segmentation", dim=3, shape=(8, 16, 16), n_train=4, n_test=1, n_un=0)
    for c in ("2d", "3d"):
        for f in (0, 1):  # 3d as with selfconfig_train --npz: its validation saves the probabilities
            train("Scratch", "BEST", configuration=c, fold=f, hyperparameters={**HP, "save_probabilities": c == "3d"},
                  roots=roots, progress=False)
    fold0 = roots.results / "BEST" / "Scratch__selfconfigPlans__3d" / "frac_1.0" / "fold_0" / "validation"
    saved = {p.name: p.stat().st_mtime_ns for p in fold0.glob("*_probabilities.npz")}
    assert saved and not list((roots.results / "BEST" / "Scratch__selfconfigPlans__2d").rglob("*.npz"))
    capsys.readouterr()
    assert run(best_cli.main, ["-d", "BEST", "--no-progress"], prog="x") == 0, capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in fold0.glob("*_probabilities.npz")} == saved  # reused
    assert list((roots.results / "BEST" / "Scratch__selfconfigPlans__2d").rglob("*.npz"))  # predicted now
    out = roots.results / "BEST" / "best_configuration" / "frac_1.0"
    record = json.loads((out / "best_configuration.json").read_text())
    names = sorted(c["name"] for c in record["candidates"])
    assert names == ["Scratch__2d", "Scratch__2d + Scratch__3d", "Scratch__3d"]
    assert record["folds"] == ["0", "1"] and record["n_validation_cases"] == 2
    best = max(record["candidates"], key=lambda c: c["mean_dice_postprocessed"])
    assert record["best"] == best["name"]
    assert "selfconfig_predict" in (out / "inference_instructions.txt").read_text()

    # every candidate's written command runs; the ensemble's output is the mean of its members'
    images = roots.raw / "BEST" / "imagesTs"
    ens = next(c for c in record["candidates"] if len(c["members"]) == 2)
    args = shlex.split(ens["predict_command"])[1:]
    args[args.index("INPUT_FOLDER")] = str(images)
    args[args.index("OUTPUT_FOLDER")] = str(tmp_path / "ens")
    assert run(predict_cli.main, [*args, "--save-probabilities", "--no-progress"], prog="x") == 0, capsys.readouterr().err
    probs = []
    for c in ("2d", "3d"):
        assert run(predict_cli.main, ["-i", str(images), "-o", str(tmp_path / c), "-c", c, "-f", "0", "1", "--save-probabilities",
                                      "--no-progress"], prog="x") == 0
        probs.append(np.load(next((tmp_path / c).glob("*.npz")))["probabilities"].astype(np.float32))
    ens_probs = np.load(next((tmp_path / "ens").glob("*.npz")))["probabilities"].astype(np.float32)
    assert np.allclose(ens_probs, (probs[0] + probs[1]) / 2, atol=2e-3)
    seg, _ = read_label(next((tmp_path / "ens").glob("*.nii.gz")))
    raw_argmax = ens_probs.argmax(0)
    pp = json.loads((out / "postprocessing" / "Scratch__2d+Scratch__3d.json").read_text())
    # the saved probabilities are float16: allow the few voxels whose top two classes tie there
    assert np.mean(np.asarray(seg) == apply_postprocessing(raw_argmax.astype(np.uint8), pp)) > 0.99
    for label in pp["largest_component_classes"]:
        assert ndimage.label(np.asarray(seg) == label)[1] <= 1


def test_find_best_errors_are_one_line(planned, roots, capsys):
    planned("NOBEST", task="segmentation", dim=3, shape=(8, 16, 16), n_train=4, n_test=0, n_un=0)
    capsys.readouterr()
    code = run(best_cli.main, ["-d", "NOBEST", "--no-progress"], prog="selfconfig_find_best_configuration")
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "train some first" in err, err


def test_ensemble_members_pairing():
    from selfconfig.inference.api import ensemble_members

    assert ensemble_members(["Scratch"], ["2d", "3d"]) == [("Scratch", "2d"), ("Scratch", "3d")]
    assert ensemble_members(["Scratch", "SurrogateFlip"], ["3d"]) == [("Scratch", "3d"), ("SurrogateFlip", "3d")]
    with pytest.raises(ConfigurationError, match="one -tr for every -c"):
        ensemble_members(["A", "B"], ["2d", "3d", "3d_lowres"])
