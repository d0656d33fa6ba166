from __future__ import annotations

import pytest

from selfconfig.pretext.flip import FlipPrediction
from selfconfig.pretext.rotation import RotationPrediction
from selfconfig.pretext.wgan import WGANPretext
from selfconfig.training.config import TrainingConfig


@pytest.mark.parametrize("task_cls", [FlipPrediction, RotationPrediction])
def test_classification_pretexts_warm_up_like_fine_tuning(task_cls):
    """Rotation prediction at AdamW's full rate from the first step collapsed to a constant output
    (FUNDUS_DR, 300 iterations: held out 0.364, chance 0.333; with the warm-up 0.639)."""
    task = task_cls.__new__(task_cls)  # the schedule only needs the rate and the hyperparameters
    task.lr, task.hp = 3e-3, TrainingConfig(warmup_fraction=0.1)
    rates = [task.learning_rate(step, 300) for step in range(300)]
    assert rates[0] == pytest.approx(3e-3 / 30)  # rises linearly over the first 10 % ...
    assert rates[29] == pytest.approx(3e-3) and max(rates) == pytest.approx(3e-3)  # ... to the peak
    assert rates[-1] < 3e-3 / 10 and all(a >= b for a, b in zip(rates[29:], rates[30:]))  # then decays


def test_the_warm_up_is_part_of_a_classification_pretraining_cache_key(planned, roots):
    from selfconfig.pretext.run import pretrain_settings
    from selfconfig.training.context import open_dataset
    from selfconfig.training.registry import get_trainer

    planned("WU", task="segmentation", dim=3, n_train=4, configurations=["3d"])
    data = open_dataset("WU", "3d", roots=roots)
    a = pretrain_settings(get_trainer("SurrogateFlip"), data, TrainingConfig(warmup_fraction=0.1))
    b = pretrain_settings(get_trainer("SurrogateFlip"), data, TrainingConfig(warmup_fraction=0.0))
    assert a["warmup_fraction"] == 0.1 and a != b
    assert "warmup_fraction" not in pretrain_settings(get_trainer("SurrogateWGAN"), data, TrainingConfig())
    assert WGANPretext.learning_rate is not RotationPrediction.learning_rate  # the GANs keep their own schedule
