"""Hyperparameters: a saved dataclass. The ones users change every day are CLI flags
(``--epochs``, ``--iters-per-epoch``, ``--lr``, ``--batch-size``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass
class TrainingConfig:
    epochs: int = 50
    iters_per_epoch: int = 50
    val_iters: int = 10
    lr: float = 1e-2
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    batch_size: int | None = None  # None: the plans' batch size
    deep_supervision: bool = True
    class_weights: str | None = None  # None | "balanced" (inverse class frequency of the training subset)
    augment: bool = True
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (see selfconfig.precision)
    seed: int = 0
    num_workers: int | None = None  # None: chosen for the machine
    checkpoint_every: int = 5  # epochs between checkpoint_latest writes (also written on interrupt)
    final_validation: bool = True  # predict the fold's validation cases whole at the end
    tta: bool = True  # mirroring at the final validation
    ema_best: float = 0.9  # smoothing of the validation metric that picks checkpoint_best
    # pre-training (surrogate strategies)
    pretrain_epochs: int = 20
    pretrain_iters_per_epoch: int = 50
    pretrain_lr: float | None = None  # None: the strategy's default
    # ImageNet initialisation
    pretrained_weights: str | None = None  # a weights file; None: the packaged EfficientNet-Lite0
    inflate_3d: bool = False  # allow 2D -> 3D kernel inflation

    @classmethod
    def for_device(cls, device: str, **overrides) -> "TrainingConfig":
        """Defaults by device: nnU-Net's 1000 x 250 on a GPU; a CPU gets a schedule that ends
        within about an hour on a 1 s / iteration plan."""
        base = cls() if device == "cpu" else cls(epochs=1000, iters_per_epoch=250, val_iters=50, checkpoint_every=50,
                                                 pretrain_epochs=100, pretrain_iters_per_epoch=250)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
