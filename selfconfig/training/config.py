"""Hyperparameters: a saved dataclass. The ones users change every day are CLI flags
(``--epochs``, ``--iters-per-epoch``, ``--lr``, ``--batch-size``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass
class TrainingConfig:
    epochs: int = 50
    iters_per_epoch: int = 50
    val_iters: int = 10
    optimizer: str = "adamw"  # "sgd" (Nesterov, nnU-Net's) | "adamw"
    lr: float = 3e-3
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    warmup_fraction: float = 0.1  # linear learning-rate warm-up over this fraction of the run's steps
    grad_clip: float = 12.0
    batch_size: int | None = None  # None: the plans' batch size
    deep_supervision: bool = True
    class_weights: str | None = None  # None | "balanced" (inverse class frequency of the training subset)
    augment: bool = True
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (see selfconfig.precision)
    seed: int = 0
    num_workers: int | None = None  # None: chosen for the machine
    checkpoint_every: int = 5  # epochs between checkpoint_latest writes (also written on interrupt)
    checkpoint_minutes: float = 5.0  # and whenever this much wall time passed since the last write (mid-epoch too)
    final_validation: bool = True  # predict the fold's validation cases whole at the end
    tta: bool = True  # mirroring at the final validation
    save_probabilities: bool = False  # the final validation also writes CASE_probabilities.npz (for ensembling)
    ema_best: float = 0.9  # smoothing of the validation metric that picks checkpoint_best
    # wall-clock budgets in minutes of training (--max-minutes): the run stops at the end of the step
    # that passes it, and the learning-rate schedule is fitted to it; epochs x iterations stay the upper bound
    max_minutes: float | None = None
    pretrain_max_minutes: float | None = None
    # False: the minutes are only a cap (the experiment's demo and quick budgets): the schedule keeps
    # epochs x iterations, and a run that reaches the cap stops there, before its decay has ended;
    # a run that fits trains exactly the same iterations however busy the machine is
    fit_schedule_to_minutes: bool = True
    # train until converged (documentation/training.md, selfconfig.training.convergence): score at regular
    # intervals (validation on whole scans; a pre-training: its held-out pretext score), keep the best,
    # and after a plateau anneal the learning rate to zero over a short tail and stop; epochs and
    # max_minutes stay caps
    until_converged: bool = False
    pretrain_until_converged: bool = False
    converge_patience: int = 5  # scores in a row without a gain above converge_margin: a plateau
    converge_margin: float = 0.005  # in the score's units (Dice, kappa, AUC, pretext accuracy)
    converge_tail: float = 0.1  # the annealing tail, as a fraction of the iterations trained before it
    converge_interval: float = 0.03  # scoring spacing, as a fraction of the run's horizon (at least an epoch)
    converge_signal: float = 2.0  # a plateau needs its level - first score > this x its scatter (0: off)
    # pre-training (surrogate strategies)
    pretrain_epochs: int = 20
    pretrain_iters_per_epoch: int = 50
    pretrain_lr: float | None = None  # None: the strategy's default
    # ImageNet initialisation
    pretrained_weights: str | None = None  # a weights file; None: the packaged EfficientNet-Lite0
    inflate_3d: bool = False  # allow 2D -> 3D kernel inflation

    @classmethod
    def for_device(cls, device: str, **overrides) -> "TrainingConfig":
        """Defaults by device. A GPU gets nnU-Net's schedule: 1000 x 250 iterations of SGD with
        Nesterov momentum 0.99 from lr 0.01. A CPU gets a schedule that ends within about an hour
        on a 1 s / iteration plan (50 x 50) and AdamW from lr 3e-3, because SGD with momentum 0.99
        barely starts in so few iterations: on LUNG_LOBES (fold 0, 25 % of the labels, 150
        iterations) the best validation Dice was 0.09 with nnU-Net's SGD and 0.66 with AdamW 3e-3;
        the CPU learning rate rises linearly over the first 10 % of the steps, because AdamW at
        3e-3 from the first step sometimes never left the class prior (FUNDUS_DR: test kappa 0.06
        after 10 minutes without warm-up, 0.93 with it; documentation/training.md)."""
        base = cls() if device == "cpu" else cls(epochs=1000, iters_per_epoch=250, val_iters=50, checkpoint_every=50,
                                                 pretrain_epochs=100, pretrain_iters_per_epoch=250, optimizer="sgd",
                                                 lr=1e-2, warmup_fraction=0.0)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def check(self) -> "TrainingConfig":
        """Refuse values no run can use (a ConfigurationError naming the field), before a run
        folder is created or an old run is discarded. The CLI refuses them earlier still."""
        import math

        from selfconfig.errors import ConfigurationError

        def bad(name, value, rule):
            raise ConfigurationError(f"hyperparameter {name} = {value!r} is invalid: {rule}")

        for name in ("epochs", "iters_per_epoch", "val_iters", "checkpoint_every", "pretrain_epochs",
                     "pretrain_iters_per_epoch", "converge_patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, v, "it must be an integer of at least 1")
        for name in ("batch_size", "num_workers"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (1 if name == "batch_size" else 0)):
                bad(name, v, "it must be a positive integer" if name == "batch_size" else "it must be 0 or more")
        if not isinstance(self.seed, int) or self.seed < 0:
            bad("seed", self.seed, "it must be an integer of at least 0")
        for name in ("lr", "pretrain_lr", "checkpoint_minutes"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                bad(name, v, "it must be a finite number greater than 0")
        for name in ("converge_tail", "converge_interval"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v <= 1):
                bad(name, v, "it must be above 0 and at most 1")
        if not (isinstance(self.warmup_fraction, (int, float)) and 0 <= self.warmup_fraction < 1):
            bad("warmup_fraction", self.warmup_fraction, "it must be at least 0 and below 1")
        for name in ("weight_decay", "momentum", "grad_clip", "poly_exponent", "converge_margin", "converge_signal"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(name, v, "it must be a finite number of at least 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
