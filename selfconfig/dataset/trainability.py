"""Datasets that verify but cannot train: every label empty, every image constant, one class.

Verification refuses files that are wrong; these datasets are formally right and would plan,
preprocess and train to a Dice of 0 (or a constant classifier) without a word. The warnings are
logged, printed by ``selfconfig_plan_and_preprocess``, kept in ``fingerprint.json`` and repeated
when a training starts, so that a reader cannot miss them.
"""

from __future__ import annotations

from selfconfig.dataset.cases import Case
from selfconfig.dataset.inspect import CaseReport
from selfconfig.dataset.labels import IGNORE_NAME
from selfconfig.dataset.schema import DatasetInfo


def trainability_warnings(info: DatasetInfo, reports: list[CaseReport],
                          cases: dict[str, list[Case]] | None = None) -> list[str]:
    train = [r for r in reports if r.split == "train"]
    if not train:
        return []
    out: list[str] = []
    constant = [r.case_id for r in train if r.constant]
    if len(constant) == len(train):
        out.append(f"every training image ({len(train)}) is constant (e.g. all zero): there is nothing to learn "
                   f"from; check that imagesTr holds the scans")
    elif constant:
        out.append(f"{len(constant)} of {len(train)} training image(s) are constant (e.g. {', '.join(constant[:3])}); "
                   f"check those files")
    if info.task == "segmentation":
        present: set[int] = set()
        for r in train:
            present.update(int(k) for k, n in (r.class_counts or {}).items() if n > 0)
        # voxel values of each trained label (a region lists several); background and ignore learn nothing
        values = {name: set(v if isinstance(v, (list, tuple)) else [v]) - {0}
                  for name, v in info.labels.items() if name != IGNORE_NAME}
        foreground = set().union(*values.values()) if values else set()
        if foreground and not present & foreground:
            out.append(f"every training label map ({len(train)}) is empty (background only): the network can only "
                       f"learn background and will score Dice 0; check labelsTr and dataset.json's label values")
        else:
            missing = [name for name, v in values.items() if v and not v & present]
            if missing:
                out.append(f"label(s) {', '.join(missing)} appear in no training label map: they cannot be learned")
    elif cases is not None:
        labels = {c.label for c in cases.get("train", []) if c.label is not None}
        if len(labels) == 1:
            out.append(f"every training case has the same class ({labels.pop()}): a classifier cannot learn to "
                       f"tell classes apart")
    return out
