"""Surrogate (pretext) tasks: self-supervised pre-training on the unlabeled pool.

A pretext task is a loop module (:mod:`selfconfig.training.loop`): it owns its networks, its
optimizers and one training step. :func:`selfconfig.pretext.run.pretrain` drives it through the
same loop as supervised training and writes one checkpoint per dataset / plans / configuration /
strategy, which every fold and label fraction then fine-tunes from.
"""

from selfconfig.pretext.base import ClassificationPretext, PretextTask

__all__ = ["PretextTask", "ClassificationPretext"]
