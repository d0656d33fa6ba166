"""SurrogateTrainer: a trainer whose weights come from a pretext task.

Subclass it and set ``pretext_task`` to a :class:`selfconfig.pretext.PretextTask`; the engine
pre-trains once (or reuses the checkpoint), transfers the weights into the target network and
fine-tunes. The transfer is checked: the whole requested group (e.g. the encoder) must be filled,
else :class:`selfconfig.errors.WeightTransferError`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from torch import nn

from selfconfig.training.trainer import Trainer

if TYPE_CHECKING:  # pragma: no cover
    from selfconfig.training.context import DatasetContext, RunContext

log = logging.getLogger(__name__)


class SurrogateTrainer(Trainer):
    uses_pretraining = True
    pretext_task: type | None = None  # a PretextTask subclass

    def check_compatible(self, data: "DatasetContext") -> None:
        self.pretext_task.check_compatible(data)

    def ensure_pretrained(self, data: "DatasetContext", device, progress: bool = True):
        """The pre-trained checkpoint: reused when it exists, else pre-trained now (under a lock)."""
        from selfconfig.pretext.run import pretrain

        return pretrain(type(self), data, self.hp, device, progress=progress).checkpoint

    def initialize_weights(self, network: nn.Module, run: "RunContext") -> dict[str, Any]:
        from selfconfig.networks import init_weights_xavier, transfer_weights
        from selfconfig.pretext.run import load_pretrained

        init_weights_xavier(network)  # parts the pretext task does not cover (decoder, head)
        path = self.ensure_pretrained(run.data, run.device, progress=run.progress)
        ckpt = load_pretrained(path)
        groups = tuple(ckpt["pretrained"]["groups"][run.data.task])
        report = transfer_weights(ckpt["pretrained"]["state_dict"], network, groups=groups,
                                  source_name=str(path))
        report.log(log)
        return {"init": "xavier + pre-trained " + "+".join(groups), "pretrained_from": str(path),
                "strategy": type(self).name, "transfer": report.to_dict()}
