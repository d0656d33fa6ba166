from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from selfconfig.dataset.verify import verify_dataset
from selfconfig.errors import DatasetFormatError, VerificationError


def test_clean_dataset_verifies(make_dataset):
    raw = make_dataset("OK", task="segmentation", dim=3)
    info, cases, reports = verify_dataset(raw)
    assert len(cases["train"]) == 6 and len(cases["test"]) == 2 and len(cases["unlabeled"]) == 2
    assert all(not r.problems for r in reports)


def test_every_problem_is_listed_at_once(make_dataset):
    raw = make_dataset("BAD", task="segmentation", dim=3)
    tr, lb = raw / "imagesTr", raw / "labelsTr"
    # 1 missing label
    (lb / "bad_000.nii.gz").unlink()
    # 2 label value not in dataset.json
    img = sitk.ReadImage(str(lb / "bad_001.nii.gz"))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = 9
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(lb / "bad_001.nii.gz"))
    # 3 NaN in an image
    img = sitk.ReadImage(str(tr / "bad_002_0000.nii.gz"))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[1, 1, 1] = np.nan
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(tr / "bad_002_0000.nii.gz"))
    # 4 label on another grid (spacing)
    lab = sitk.ReadImage(str(lb / "bad_003.nii.gz"))
    lab.SetSpacing((3.0, 3.0, 3.0))
    sitk.WriteImage(lab, str(lb / "bad_003.nii.gz"))
    # 5 unreadable file
    (tr / "bad_004_0000.nii.gz").write_bytes(b"this is not an image")
    # 6 a shape mismatch between image and label
    lab = sitk.ReadImage(str(lb / "bad_005.nii.gz"))
    sitk.WriteImage(lab[:, :, :8], str(lb / "bad_005.nii.gz"))
    # 7 a stray file
    (tr / "notes.txt").write_text("x")

    with pytest.raises(VerificationError) as e:
        verify_dataset(raw)
    problems = e.value.problems
    text = "\n".join(problems)
    assert "bad_000" in text and "missing" in text
    assert "bad_001" in text and "[9]" in text
    assert "bad_002" in text and "NaN" in text
    assert "bad_003" in text and "geometry" in text
    assert "bad_004" in text
    assert "bad_005" in text and "shape" in text
    assert "notes.txt" in text
    assert all("\n" not in p for p in problems)  # one line each
    assert len(problems) >= 7


def test_channel_count_and_dataset_json_errors(make_dataset):
    raw = make_dataset("CH", task="segmentation", dim=3)
    ds = json.loads((raw / "dataset.json").read_text())
    ds["channel_names"] = {"0": "CT", "1": "MR"}
    (raw / "dataset.json").write_text(json.dumps(ds))
    with pytest.raises(VerificationError) as e:
        verify_dataset(raw)
    assert any("channel" in p for p in e.value.problems)
    ds["labels"] = {"background": 0, "a": 2}
    (raw / "dataset.json").write_text(json.dumps(ds))
    with pytest.raises(DatasetFormatError, match="consecutive"):
        verify_dataset(raw)


def test_classification_table_problems(make_dataset):
    raw = make_dataset("CLS", task="classification", dim=2, rgb=True, shape=(32, 32))
    lines = (raw / "labelsTr.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",7"  # label outside dataset.json
    lines.append("ghost_case,1")  # no image
    (raw / "labelsTr.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(VerificationError) as e:
        verify_dataset(raw)
    text = "\n".join(e.value.problems)
    assert "7" in text and "ghost_case" in text
