from __future__ import annotations

import logging

import pytest
import torch

from selfconfig.errors import WeightTransferError
from selfconfig.networks import (
    TransferReport,
    build_classification_network,
    build_pretext_network,
    build_segmentation_network,
    transfer_weights,
)

from .conftest import plain_plan


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def test_pretext_to_unet_copies_exactly_the_encoder(plan3d):
    source = build_pretext_network(plan3d, num_outputs=3)
    target = build_segmentation_network(plan3d)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    src_state = {k: v.clone() for k, v in source.state_dict().items()}
    report = transfer_weights(source.state_dict(), target, groups=("encoder",))
    encoder_keys = target.parameter_groups()["encoder"]
    assert sorted(report.copied) == sorted(encoder_keys)
    assert len(report.copied) == len(source.encoder.state_dict()) == 24
    assert report.missing == []
    assert sorted(report.unexpected) == ["head.bias", "head.weight"]
    after = target.state_dict()
    for k, v in after.items():
        if k in encoder_keys:
            assert _equal(v, source.state_dict()[k])
        else:
            assert _equal(v, before[k]), k  # decoder and seg layers untouched
    # the source is not modified
    assert all(_equal(v, src_state[k]) for k, v in source.state_dict().items())


def test_colour_generator_to_segmenter_copies_encoder_and_decoder():
    generator = build_segmentation_network(plain_plan(2, in_channels=1, num_classes=3))
    segmenter = build_segmentation_network(plain_plan(2, in_channels=1, num_classes=5))
    report = transfer_weights(generator.state_dict(), segmenter, groups=("encoder", "decoder"))
    groups = segmenter.parameter_groups()
    assert sorted(report.copied) == sorted(groups["encoder"] + groups["decoder"])
    assert len(report.skipped) == len(groups["head"]) == 4
    assert all("not requested" in s for s in report.skipped)
    assert all(k.startswith("seg_layers.") for k in (s.split(":")[0] for s in report.skipped))
    for k in groups["decoder"]:
        assert _equal(segmenter.state_dict()[k], generator.state_dict()[k])


def test_shape_mismatch_in_requested_group_raises_and_loads_nothing():
    generator = build_segmentation_network(plain_plan(2, num_classes=3))
    segmenter = build_segmentation_network(plain_plan(2, num_classes=5))
    before = {k: v.clone() for k, v in segmenter.state_dict().items()}
    with pytest.raises(WeightTransferError, match="shape mismatch"):
        transfer_weights(generator.state_dict(), segmenter, groups=("encoder", "decoder", "head"))
    assert all(_equal(v, before[k]) for k, v in segmenter.state_dict().items())
    report = transfer_weights(generator.state_dict(), segmenter, groups=("encoder", "decoder", "head"),
                              strict_groups=False)
    assert len(report.missing) == 4 and any("shape mismatch" in s for s in report.skipped)


def test_partial_transfer_raises():
    shallow = plain_plan(3)
    deep = plain_plan(3)
    deep.encoder.n_conv_per_stage = [2, 2, 3]  # one more conv in the last stage
    source = build_pretext_network(shallow, 3)
    target = build_segmentation_network(deep)
    with pytest.raises(WeightTransferError) as info:
        transfer_weights(source.state_dict(), target, source_name="pretrain/checkpoint.pt")
    message = str(info.value)
    assert "4 of 28 tensors" in message and "pretrain/checkpoint.pt" in message
    assert "encoder.stages.2.2.conv.weight" in message


def test_prefix_map_and_unknown_group():
    critic = build_classification_network(plain_plan(2, num_classes=1))
    wrapped = {f"critic.{k}": v for k, v in critic.state_dict().items()}
    target = build_classification_network(plain_plan(2, num_classes=4))
    report = transfer_weights(wrapped, target, source_prefix_map={"critic.": ""})
    assert len(report.copied) == len(target.parameter_groups()["encoder"])
    with pytest.raises(WeightTransferError, match="no group decoder"):
        transfer_weights(wrapped, target, groups=("decoder",), source_prefix_map={"critic.": ""})


def test_missing_num_batches_tracked_is_tolerated():
    source = build_pretext_network(plain_plan(2, norm="batch"), 3)
    target = build_segmentation_network(plain_plan(2, norm="batch"))
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    report = transfer_weights(state, target)
    assert report.missing and all(k.endswith("num_batches_tracked") for k in report.missing)


def test_report_summary_and_log(caplog):
    report = TransferReport(copied=["a", "b"], skipped=["c: not requested"], missing=[], unexpected=["d"],
                            groups=["encoder"])
    text = report.summary()
    assert "copied 2" in text and "skipped 1" in text and "unexpected 1" in text
    with caplog.at_level(logging.INFO):
        report.log(logging.getLogger("test"))
    assert "copied 2" in caplog.text
