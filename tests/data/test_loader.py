"""Patch sampling and the background loader: label types, worker priority."""

from __future__ import annotations

import os

import numpy as np
import torch

from selfconfig.data.loader import batch_stream
from selfconfig.data.sampler import CaseRef, PatchSampler
from selfconfig.preprocessing import storage
from selfconfig.training.losses import SegmentationLoss


def _case(folder, case_id="c0", shape=(12, 20, 20)):
    rng = np.random.default_rng(0)
    seg = np.zeros(shape, np.uint8)
    seg[3:9, 5:15, 5:15] = 1
    seg[5:7, 8:12, 8:12] = 2
    fg = np.argwhere(seg > 0)
    fg = np.concatenate([seg[tuple(fg.T)][:, None], fg], 1)
    storage.save_case(folder, case_id, rng.normal(size=(1, *shape)).astype(np.float32), seg, fg, {})
    return CaseRef(str(folder), case_id)


class _NiceSampler(PatchSampler):
    """Reports the scheduling priority of the process that sampled the batch."""

    def sample(self, index):
        batch = super().sample(index)
        batch["nice"] = np.asarray(os.nice(0))
        return batch


def test_label_maps_keep_their_stored_type_and_train_like_int64(tmp_path):
    ref = _case(tmp_path)
    batch = PatchSampler([ref], [8, 16, 16], 2, "segmentation", oversample=0.5, seed=3).sample(0)
    assert batch["seg"].dtype == np.uint8  # a quarter of the bytes of int64 between processes
    assert batch["seg"].shape == (2, 1, 8, 16, 16) and batch["seg"].max() >= 1
    seg = torch.from_numpy(batch["seg"])
    torch.manual_seed(0)
    logits = [torch.randn(2, 3, 8, 16, 16), torch.randn(2, 3, 4, 8, 8)]
    loss = SegmentationLoss()
    assert torch.equal(loss(logits, seg), loss(logits, seg.long()))


def test_workers_run_at_lower_priority_only_when_asked(tmp_path):
    sampler = _NiceSampler([_case(tmp_path)], [8, 16, 16], 1, "segmentation", seed=0)
    base = os.nice(0)
    low = batch_stream(sampler, num_workers=1, low_priority=True, stop=1)
    normal = batch_stream(sampler, num_workers=1, low_priority=False, stop=1)
    assert int(next(low)["nice"]) == min(base + 10, 19)
    assert int(next(normal)["nice"]) == base
    assert os.nice(0) == base  # the training process itself is untouched
