"""3d_cascade_fullres (nnU-Net's cascade): planned with 3d_lowres, trained on the 3d_lowres
cross-validation predictions as extra one-hot input channels, predicted after the 3d_lowres model,
and one clear line when the previous stage is missing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from planners import DefaultPlanner
from selfconfig.errors import PreviousStageError
from selfconfig.plans import Plans
from selfconfig.testing import planner_inputs


_info_fp = planner_inputs


def test_cascade_is_planned_with_lowres():
    info, fp = _info_fp()
    plans = DefaultPlanner(info, fp, cpu_gflops=20.0, cpu_target_seconds=0.3).plan()
    full, cascade = plans.configurations["3d"], plans.configurations["3d_cascade_fullres"]
    assert cascade.previous_stage == "3d_lowres" and full.previous_stage is None
    assert cascade.network.in_channels == 1 + 2  # the image + one channel per foreground label
    assert (cascade.patch_size, cascade.spacing, cascade.batch_size) == (full.patch_size, full.spacing, full.batch_size)
    assert cascade.data_name == "3d"  # shares the full-resolution preprocessed data
    assert full.network.in_channels == 1  # the 3d plan itself is untouched
    assert "3d_cascade_fullres_imagenet" not in plans.configurations
    assert plans.recommended_configuration == "3d_lowres"
    again = Plans.from_dict(plans.to_dict())
    assert again.configurations["3d_cascade_fullres"].previous_stage == "3d_lowres"
    # no 3d_lowres, no cascade
    info, fp = _info_fp(shape=(20, 48, 48))
    assert "3d_cascade_fullres" not in DefaultPlanner(info, fp, cpu_gflops=400.0).plan().configurations


def test_plans_without_the_key_still_load():
    info, fp = _info_fp()
    d = DefaultPlanner(info, fp, cpu_gflops=20.0, cpu_target_seconds=0.3).plan().to_dict()
    d["configurations"].pop("3d_cascade_fullres")
    for c in d["configurations"].values():
        c.pop("previous_stage")
    plans = Plans.from_dict(d)
    assert all(c.previous_stage is None for c in plans.configurations.values())


def test_previous_stage_input_one_hot_and_perturbation():
    from selfconfig.augment.previous_stage import PreviousStageInput

    seg = torch.zeros(4, 1, 8, 12, 12, dtype=torch.uint8)
    seg[:, :, 2:6, 3:9, 3:9] = 1
    seg[:, :, 3:5, 5:7, 5:7] = 2
    plain = PreviousStageInput([1, 2], perturb=False)(seg, 7)
    assert plain.shape == (4, 2, 8, 12, 12) and torch.equal(plain[:, 1].bool(), seg[:, 0] == 2)
    aug = PreviousStageInput([1, 2], perturb=True, seed=3, p_per_sample=1.0)
    a, b = aug(seg, 7), aug(seg, 7)
    assert torch.equal(a, b) and not torch.equal(a, plain)  # a pure function of (seed, step), and it changes
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0}
    assert torch.equal(aug(seg), plain)  # validation batches are not perturbed


def test_to_preprocessed_grid_follows_the_case():
    from selfconfig.preprocessing.previous_stage import to_preprocessed_grid

    info, fp = _info_fp(shape=(10, 20, 20))
    plans = DefaultPlanner(info, fp, cpu_gflops=20.0, cpu_target_seconds=0.3).plan()
    seg = np.zeros((12, 24, 24), np.uint8)
    seg[4:8, 8:16, 8:16] = 2
    props = {"geometry": {"shape": [12, 24, 24], "spacing": [2.0, 1.0, 1.0]}, "crop_box": [[1, 11], [2, 22], [2, 22]],
             "shape_after_resampling": [10, 10, 10], "spacing_after_resampling": [2.0, 2.0, 2.0]}
    out = to_preprocessed_grid(seg, props, plans, plans.configurations["3d"])
    assert out.shape == (10, 10, 10) and set(np.unique(out)) == {0, 2}
    with pytest.raises(Exception, match="shape"):
        to_preprocessed_grid(seg[:-1], props, plans, plans.configurations["3d"])


@pytest.mark.slow
def test_cascade_trains_on_lowres_cross_validation_and_predicts(roots, make_dataset, fast_hp, tmp_path):
    """Tiny budget -> 3d_lowres and 3d_cascade_fullres; the cascade refuses to train before every
    lowres fold validated its cases, then trains on their predictions, and prediction runs the lowres
    model first and writes each scan's own geometry."""
    import SimpleITK as sitk

    from selfconfig.inference.api import predict
    from selfconfig.inference.predictor import Predictor
    from selfconfig.planning import plan_and_preprocess
    from selfconfig.training.api import train

    make_dataset("CAS", task="segmentation", dim=3, shape=(16, 48, 48), n_train=3, n_test=1, n_un=0)
    res = plan_and_preprocess("CAS", num_processes=1, cpu_gflops=2.0, cpu_target_seconds=0.05, roots=roots,
                              progress=False)
    cascade = res.plans.configurations["3d_cascade_fullres"]
    assert cascade.previous_stage == "3d_lowres" and cascade.network.in_channels == 3
    hp = dict(fast_hp, epochs=1)

    # no lowres predictions yet: one line naming the command, and nothing written
    with pytest.raises(PreviousStageError, match=r"selfconfig_train -d CAS -c 3d_lowres -tr Scratch -frac 1 .*fold\(s\) 0, 1, 2"):
        train("Scratch", "CAS", configuration="3d_cascade_fullres", fold=0, hyperparameters=hp, roots=roots,
              progress=False)
    cascade_runs = roots.results / "CAS" / "Scratch__selfconfigPlans__3d_cascade_fullres"
    assert not cascade_runs.exists()

    for fold in range(3):  # 3 training cases: 3 folds, each validates one case
        train("Scratch", "CAS", configuration="3d_lowres", fold=fold, hyperparameters=hp, roots=roots, progress=False)
    run = train("Scratch", "CAS", configuration="3d_cascade_fullres", fold=0, hyperparameters=hp, roots=roots,
                progress=False)
    assert run.trained and run.validation is not None  # its final validation ran the lowres fold 0 first
    next_stage = roots.results / "CAS" / "Scratch__selfconfigPlans__3d_lowres" / "frac_1.0" / "predicted_next_stage"
    assert len(list((next_stage / "3d_cascade_fullres").glob("*.npy"))) == 3

    model = Predictor.from_checkpoints([run.run_dir / "checkpoint_final.pt"], torch.device("cpu"))
    first_conv = next(m for m in model.models[0].network.modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.weight.shape[1] == 3  # the image + 2 one-hot channels of the lowres segmentation
    assert model.previous_stage is not None and model.previous_stage.configuration == "3d_lowres"

    out = tmp_path / "pred"
    pred = predict(roots.raw / "CAS" / "imagesTs", out, trainer="Scratch", dataset="CAS",
                   configuration="3d_cascade_fullres", folds=["0"], roots=roots, progress=False)
    assert pred.cases
    for img in sorted((roots.raw / "CAS" / "imagesTs").glob("*_0000.nii.gz")):
        ref = sitk.ReadImage(str(img))
        seg = sitk.ReadImage(str(out / img.name.replace("_0000", "")))
        assert seg.GetSize() == ref.GetSize() and np.allclose(seg.GetSpacing(), ref.GetSpacing())
        assert np.allclose(seg.GetOrigin(), ref.GetOrigin())

    # an exported cascade carries its lowres model: installed where the data never were, it predicts the same
    import zipfile

    from selfconfig.dataset.io import read_label
    from selfconfig.inference.export import export_model
    from selfconfig.inference.install import install_model
    from selfconfig.paths import Roots

    package = tmp_path / "cascade.zip"
    export_model(package, trainer="Scratch", dataset="CAS", configuration="3d_cascade_fullres", folds=["0"],
                 roots=roots)
    with zipfile.ZipFile(package) as zf:
        weights = sorted(n for n in zf.namelist() if n.endswith(".pt"))
    assert weights == ["Scratch__selfconfigPlans__3d_cascade_fullres/frac_1.0/fold_0/checkpoint_final.pt",
                       "Scratch__selfconfigPlans__3d_lowres/frac_1.0/fold_0/checkpoint_final.pt"]
    elsewhere = Roots(tmp_path / "x" / "raw", tmp_path / "x" / "preprocessed", tmp_path / "x" / "results")
    install_model(package, roots=elsewhere)
    predict(roots.raw / "CAS" / "imagesTs", tmp_path / "pred_installed", trainer="Scratch", dataset="CAS",
            configuration="3d_cascade_fullres", roots=elsewhere, progress=False)
    for f in out.glob("*.nii.gz"):
        assert np.array_equal(read_label(f)[0], read_label(tmp_path / "pred_installed" / f.name)[0])

    # the lowres model gone: one clear error
    lowres_final = next_stage.parent / "fold_0" / "checkpoint_final.pt"
    lowres_final.rename(lowres_final.with_name("moved.pt"))
    with pytest.raises(PreviousStageError, match=r"selfconfig_train -d CAS -c 3d_lowres -tr Scratch -frac 1 -f 0"):
        predict(roots.raw / "CAS" / "imagesTs", tmp_path / "pred2", trainer="Scratch", dataset="CAS",
                configuration="3d_cascade_fullres", folds=["0"], roots=roots, progress=False)


class _CopyPreviousStage(torch.nn.Module):
    """Logits that repeat the one-hot previous-stage channels after the one image channel: scored on
    whole scans, its score is the previous stage's own Dice when (and only when) those channels are
    the previous stage's segmentation."""

    def forward(self, x):
        prev = x[:, 1:]
        return 10.0 * torch.cat([1.0 - prev.sum(1, keepdim=True), prev], 1)


def test_a_cascade_stage_trains_until_converged_scored_with_its_previous_stage(roots, make_dataset, fast_hp,
                                                                              monkeypatch):
    """--until-converged scores a cascade stage on whole validation scans with the previous stage's
    segmentation as one-hot input channels. The 3d_lowres cross-validation predictions are stand-ins
    (each case's reference shifted by two voxels) so that no lowres fold has to be trained."""
    from dataclasses import replace

    from selfconfig.dataset.io import read_image, read_label, write_segmentation
    from selfconfig.inference import whole_scan
    from selfconfig.inference.predictor import LoadedModel, Predictor
    from selfconfig.planning import plan_and_preprocess
    from selfconfig.preprocessing import storage
    from selfconfig.training import api, convergence
    from selfconfig.training.context import open_dataset

    make_dataset("CASC", task="segmentation", dim=3, shape=(32, 32, 32), n_train=3, n_test=0, n_un=0)
    plans = plan_and_preprocess("CASC", num_processes=1, cpu_gflops=2.0, cpu_target_seconds=0.05, roots=roots,
                                progress=False).plans
    assert plans.configurations["3d_cascade_fullres"].previous_stage == "3d_lowres"
    lowres = open_dataset("CASC", "3d_lowres", roots=roots)
    for k, split in enumerate(lowres.splits()):  # each fold's "final validation" of the case it validated
        run_dir = lowres.run_dir("Scratch", 1.0, k)
        (run_dir / "validation").mkdir(parents=True)
        (run_dir / "checkpoint_final.pt").write_bytes(b"")
        for c in split["val"]:
            seg, geometry = read_label(roots.raw / "CASC" / "labelsTr" / f"{c}.nii.gz")
            write_segmentation(np.roll(seg, 2, axis=-1), geometry, run_dir / "validation" / f"{c}.nii.gz")

    made = []

    def recording_scorer(data, val_refs, device, precision):
        score = whole_scan.whole_scan_scorer(data, val_refs, device, precision)
        made.append((data, val_refs, score))
        return score

    monkeypatch.setattr(api, "whole_scan_scorer", recording_scorer)
    monkeypatch.setattr(convergence, "SCORING_SHARE", 1e9)  # score every epoch
    hp = {**fast_hp, "precision": "fp32", "final_validation": False, "until_converged": True, "epochs": 20,
          # margin 1.0: no score is a gain, plateau at epoch 3 (signal 0: no left-its-start check)
          "converge_patience": 2, "converge_margin": 1.0, "converge_signal": 0.0}
    run = api.train("Scratch", "CASC", configuration="3d_cascade_fullres", fold=0, hyperparameters=hp, roots=roots,
                    progress=False)
    info = json.loads((run.run_dir / "training_time.json").read_text())["convergence"]
    assert info["stop_reason"] == "converged" and info["plateau_epoch"] == 3
    scores = [c["score"] for c in info["curve"]]
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)
    assert (run.run_dir / "checkpoint_best.pt").is_file() and (run.run_dir / "checkpoint_final.pt").is_file()

    # the scorer got the validation cases with their previous-stage maps, and scores what they hold
    (data, val_refs, score), = made
    assert [r.case_id for r in val_refs] == lowres.splits()[0]["val"] and all(r.previous_stage for r in val_refs)
    dice = []
    for ref in val_refs:
        prev = np.load(ref.previous_stage)
        ref_seg = storage.load_seg(Path(ref.folder), ref.case_id, mmap=False)
        assert prev.shape == ref_seg.shape
        dice.append(np.mean([2 * np.sum((prev == v) & (ref_seg == v)) / (np.sum(prev == v) + np.sum(ref_seg == v))
                             for v in (1, 2)]))
    assert 0.1 < np.mean(dice) < 0.99
    assert score(_CopyPreviousStage()) == pytest.approx(np.mean(dice), abs=1e-9)
    with pytest.raises(ValueError, match="3d_lowres label map"):
        whole_scan.whole_scan_scorer(data, [replace(r, previous_stage=None) for r in val_refs], torch.device("cpu"))

    # such a predictor of preprocessed cascade inputs predicts no scans: it has no lowres model
    model = LoadedModel(_CopyPreviousStage(), data.plans, data.configuration, "", Path("(in training)"))
    with pytest.raises(PreviousStageError, match="Predictor.from_checkpoints"):
        Predictor([model], torch.device("cpu"), previous_stage_in_data=True).predict_case(
            *read_image(roots.raw / "CASC" / "imagesTr" / f"{val_refs[0].case_id}_0000.nii.gz"))
