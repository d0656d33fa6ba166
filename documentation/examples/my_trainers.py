"""Examples for documentation/extending.md: a custom trainer and a custom pretext task.

Use them without touching the installed package:

    selfconfig_train -tr documentation/examples/my_trainers.py:AdamScratch -frac 0.25
    selfconfig_train -tr documentation/examples/my_trainers.py:SurrogateRestoration -frac 0.25

(or put this folder on PYTHONPATH and write ``-tr my_trainers:AdamScratch``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from selfconfig.pretext import PretextTask
from selfconfig.pretext.trainer import SurrogateTrainer
from trainers import Scratch


class AdamScratch(Scratch):
    """Scratch initialisation, but AdamW with a constant learning rate."""

    description = "Xavier init, AdamW, constant learning rate"

    def build_optimizer(self, network, hp):
        return torch.optim.AdamW(network.parameters(), lr=3e-4, weight_decay=1e-4)

    def learning_rate(self, step, total, hp):
        return 3e-4


class Restoration(PretextTask):
    """A Models-Genesis-style pretext task: restore the original patch from a distorted copy
    (a random monotone intensity curve plus local pixel shuffling). The network is the target
    U-Net with one output per input channel; after pre-training its encoder and decoder
    initialise the segmenter."""

    name = "restoration"
    monitor = "val_neg_mse"
    augmentation = "spatial"
    default_lr = 1e-3
    # judged by its held-out MSE against the distorted input's (an output that learned nothing)
    held_out_error = ("mse", "restoration MSE", "input_mse")

    def build(self):
        from selfconfig.networks import build_segmentation_network, init_weights_xavier

        plan = self.data.config.network
        channels = self.data.plans.num_input_channels
        net_plan = replace(plan, num_classes=channels, decoder=replace(plan.decoder, deep_supervision=False))
        self.network = build_segmentation_network(net_plan).to(self.device)
        self.network.deep_supervision = False
        init_weights_xavier(self.network)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=self.lr)

    def distort(self, x):
        # a random monotone intensity curve (power law on the min-max scaled patch) ...
        lo = x.amin(dim=tuple(range(1, x.ndim)), keepdim=True)
        hi = x.amax(dim=tuple(range(1, x.ndim)), keepdim=True)
        unit = (x - lo) / (hi - lo + 1e-6)
        gamma = (0.5 + 1.5 * self.rand(x.shape[0])).to(x.device).view(-1, *[1] * (x.ndim - 1))
        y = unit ** gamma * (hi - lo) + lo
        # ... and local shuffling: swap each voxel with a neighbour along the last axis at random
        swap = (self.rand(*y.shape) < 0.1).to(y.device)
        return torch.where(swap, torch.roll(y, 1, dims=-1), y)

    def train_step(self, batch, state):
        self.network.train()
        lr = self.set_lr(self.optimizer, state)
        x = self.augment(self.to_device(batch["data"]))
        with self.autocast():
            out = self.network(self.distort(x))
        loss = F.mse_loss(out.float(), x)
        self.optimizer_step(loss, self.optimizer, self.network.parameters())
        return {"loss": float(loss.detach()), "lr": lr}

    @torch.no_grad()
    def validation_step(self, batch):
        self.network.eval()
        x = self.to_device(batch["data"])
        distorted = self.distort(x)
        with self.autocast():
            out = self.network(distorted)
        return {"mse": float(F.mse_loss(out.float(), x)), "input_mse": float(F.mse_loss(distorted.float(), x))}

    def validation_end(self, outputs):
        mse = sum(o["mse"] for o in outputs) / max(len(outputs), 1)
        input_mse = sum(o["input_mse"] for o in outputs) / max(len(outputs), 1)
        return {"val_loss": mse, "val_neg_mse": -mse, "val_mse": mse, "val_input_mse": input_mse}

    def transferable_state(self):
        return {k: v.detach().cpu() for k, v in self.network.state_dict().items()}

    def transfer_groups(self, target_task):
        return ("encoder", "decoder") if target_task == "segmentation" else ("encoder",)


class SurrogateRestoration(SurrogateTrainer):
    """Pre-train by restoration on the unlabeled pool, then fine-tune."""

    description = "Models-Genesis-style restoration pre-training"
    pretext_task = Restoration
