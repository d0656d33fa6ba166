"""The learning-rate schedule: linear warm-up, then nnU-Net's polynomial decay to zero."""

import pytest

from selfconfig.errors import ConfigurationError
from selfconfig.training.config import TrainingConfig
from selfconfig.training.modules import poly_lr
from selfconfig.training.trainer import Trainer


def test_poly_without_warmup_is_nnunets():
    assert poly_lr(1.0, 0, 100) == 1.0
    assert poly_lr(1.0, 50, 100) == pytest.approx(0.5 ** 0.9)
    assert 0 < poly_lr(1.0, 99, 100) < 0.02


def test_warmup_rises_linearly_then_decays_over_the_rest():
    lrs = [poly_lr(1.0, s, 100, 0.9, warmup_steps=10) for s in range(100)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == 1.0  # the peak, then the decay of a 90-step run
    assert lrs[55] == pytest.approx(poly_lr(1.0, 45, 90))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert 0 < lrs[-1] < 0.05


def test_cpu_defaults_warm_up_and_gpu_keeps_nnunets_schedule():
    cpu, gpu = TrainingConfig.for_device("cpu"), TrainingConfig.for_device("cuda")
    assert cpu.warmup_fraction == 0.1 and gpu.warmup_fraction == 0.0
    trainer = Trainer(cpu)
    assert trainer.learning_rate(0, 1000, cpu) == pytest.approx(cpu.lr / 100)
    assert trainer.learning_rate(99, 1000, cpu) == pytest.approx(cpu.lr)
    assert Trainer(gpu).learning_rate(0, 1000, gpu) == gpu.lr


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2])
def test_warmup_fraction_out_of_range_is_refused(bad):
    with pytest.raises(ConfigurationError, match="warmup_fraction"):
        TrainingConfig(warmup_fraction=bad).check()
