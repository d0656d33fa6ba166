"""selfconfig_export_model / selfconfig_install_model: export, install into a fresh results root
that never saw the dataset, predict there: identical output. Unsafe packages are refused in one
line and nothing is written."""

from __future__ import annotations

import io
import json
import shlex
import stat
import zipfile

import numpy as np
import pytest
import torch

from selfconfig.cli import export_model as export_cli
from selfconfig.cli import install_model as install_cli
from selfconfig.cli import predict as predict_cli
from selfconfig.cli.common import run
from selfconfig.dataset.io import read_label
from selfconfig.training.api import train

HP = {"epochs": 1, "iters_per_epoch": 2, "val_iters": 1, "num_workers": 0, "pretrain_epochs": 1,
      "pretrain_iters_per_epoch": 2}


def _roots_args(base):
    return ["--raw", str(base / "raw"), "--preprocessed", str(base / "preprocessed"), "--results", str(base / "results")]


def _one_error(code, err, prog, *words):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def exported(planned, roots, tmp_path, capsys):
    planned("PKG", task="segmentation", dim=3, shape=(8, 16, 16), n_train=4, n_test=2, n_un=1)
    for fold in (0, 1):
        train("SurrogateFlip", "PKG", fold=fold, fraction=0.5, hyperparameters=HP, roots=roots, progress=False)
    zip_path = tmp_path / "model.zip"
    code = run(export_cli.main, ["-d", "PKG", "-tr", "SurrogateFlip", "-o", str(zip_path), "--no-progress"], prog="x")
    assert code == 0, capsys.readouterr().err
    return zip_path


def test_export_install_predict_identical(exported, roots, tmp_path, capsys):
    with zipfile.ZipFile(exported) as zf:
        names = zf.namelist()
        card = json.loads(zf.read(next(n for n in names if n.endswith("model_card.json"))))
    assert sorted(n for n in names if n.endswith(".pt")) == [
        f"SurrogateFlip__selfconfigPlans__3d/frac_0.5/fold_{k}/checkpoint_final.pt" for k in (0, 1)]
    assert all(n.endswith((".pt", ".json", ".md")) for n in names)
    m = card["members"][0]
    assert card["label_fraction"] == 0.5 and card["folds"] == ["0", "1"]
    assert card["versions"]["torch"] == torch.__version__ and card["versions"]["selfconfig"]
    assert m["trainer"] == "SurrogateFlip" and m["pretraining"]["iterations"] == 2
    assert m["pretraining"]["unlabeled_cases"] >= 3 and m["pretraining"]["dataset"] == "PKG"
    assert set(m["cross_validation"]["per_fold"]) == {"0", "1"} and m["cross_validation"]["mean_dice"] is not None

    fresh = tmp_path / "fresh"  # a machine that never saw PKG: empty raw and preprocessed roots
    code = run(install_cli.main, [str(exported), *_roots_args(fresh), "--no-progress"], prog="x")
    out = capsys.readouterr().out
    assert code == 0, out
    assert not (fresh / "preprocessed" / "PKG").exists() and not (fresh / "raw" / "PKG").exists()
    command = next(ln for ln in out.splitlines() if ln.startswith("predict with: "))[len("predict with: "):]
    images = roots.raw / "PKG" / "imagesTs"
    args = shlex.split(command)[1:]
    args[args.index("INPUT")] = str(images)
    args[args.index("OUTPUT")] = str(tmp_path / "pred_fresh")
    assert run(predict_cli.main, [*args, "--raw", str(fresh / "raw"), "--preprocessed", str(fresh / "preprocessed"),
                                  "--no-progress"], prog="x") == 0, capsys.readouterr().err
    assert run(predict_cli.main, ["-i", str(images), "-o", str(tmp_path / "pred_src"), "-tr", "SurrogateFlip",
                                  "--no-progress"], prog="x") == 0
    files = sorted((tmp_path / "pred_src").glob("*.nii.gz"))
    assert len(files) == 2
    for f in files:
        a, _ = read_label(f)
        b, _ = read_label(tmp_path / "pred_fresh" / f.name)
        assert np.array_equal(np.asarray(a), np.asarray(b))

    # installing the same package again is a no-op; a different file in its place needs --overwrite
    assert run(install_cli.main, [str(exported), *_roots_args(fresh)], prog="x") == 0
    (fresh / "results" / "PKG" / "plans.json").write_text("{}")
    capsys.readouterr()
    code = run(install_cli.main, [str(exported), *_roots_args(fresh)], prog="selfconfig_install_model")
    _one_error(code, capsys.readouterr().err, "selfconfig_install_model", "--overwrite")
    assert run(install_cli.main, [str(exported), *_roots_args(fresh), "--overwrite"], prog="x") == 0


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _tampered(src, tmp_path, name, data=b"{}", link=False):
    out = tmp_path / f"bad_{abs(hash(name))}.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item))
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zout.writestr(info, data)
    return out


def _pickled_code() -> bytes:
    buf = io.BytesIO()
    torch.save({"format": "selfconfig-checkpoint", "x": _Evil()}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("name,data,link,words", [
    ("../escape.json", b"{}", False, "escapes the target folder"),
    ("/etc/evil.json", b"{}", False, "absolute"),
    ("PKG/../../x.json", b"{}", False, "escapes the target folder"),
    ("models/link.json", b"/etc/passwd", True, "is a link"),
    ("run.py", b"import os", False, "neither JSON/text nor weights"),
    ("Scratch__selfconfigPlans__3d/frac_0.5/fold_0/checkpoint_final.pt", None, False, "weights only"),
    ("notes.json", b"not json", False, "not valid json"),
])
def test_unsafe_package_refused_nothing_written(exported, tmp_path, capsys, name, data, link, words):
    bad = _tampered(exported, tmp_path, name, _pickled_code() if data is None else data, link)
    fresh = tmp_path / "fresh"
    capsys.readouterr()
    code = run(install_cli.main, [str(bad), *_roots_args(fresh)], prog="selfconfig_install_model")
    _one_error(code, capsys.readouterr().err, "selfconfig_install_model", words)
    assert not (fresh / "results").exists() or not any((fresh / "results").rglob("*"))
