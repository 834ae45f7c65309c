"""params.yaml's ``train`` section: how the GAN trains (the train stage reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt

# train.device and train.memory_format: keys with no registry behind them.
DEVICES = ("auto", "cpu", "cuda", "mps")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    section: ClassVar[str] = "train"

    loss: str = opt()  # gan.losses.LOSSES
    optimizer: str = opt()  # gan.optim.OPTIMIZERS
    lr: float = opt(gt=0.0, max=1.0)
    lr_d: float | None = opt(None, gt=0.0, max=1.0)
    betas: tuple[float, float] = opt((0.0, 0.99), min=0.0, max=0.9999)
    batch_size: int = opt(min=1, max=65536)
    steps: int = opt(min=1)
    d_steps: int = opt(1, min=1, max=100)
    gp_weight: float = opt(10.0, min=0.0)
    r1_weight: float = opt(0.0, min=0.0)
    label_smoothing: float = opt(0.0, min=0.0, max=0.5)
    grad_clip: float | None = opt(None, gt=0.0)
    lr_decay: str = opt("linear")  # gan.optim.LR_DECAYS
    ema_decay: float | None = opt(0.999, min=0.0, max=0.99999)
    ema_warmup: float = opt(25.0, min=1.0, max=1e6)
    mode_seeking: float = opt(0.0, min=0.0)
    reuse_fakes: bool = opt(True)
    log_every: int = opt(min=1)
    eval_every: int = opt(500, min=0)
    snapshot_every: int = opt(500, min=0)
    deterministic: bool = opt(False)
    device: str = opt("auto", choices=DEVICES)
    precision: str = opt("auto")  # auto or gan.runtime.AUTOCAST_DTYPES
    memory_format: str = opt("auto", choices=MEMORY_FORMATS)
    compile: bool = opt(False)
    devices: int = opt(1, min=1, max=1024)
    # machines of one run, each running train.devices processes; > 1: rendezvous at
    # $GAN_RDZV_ENDPOINT (stages/train.py)
    nodes: int = opt(1, min=1, max=1024, recorded_when_off=False)
    # gan.augment.POLICIES, in the order applied; null or []: off
    augment: tuple[str, ...] | None = opt((), recorded_when_off=False)
