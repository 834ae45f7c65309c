"""Optimizer and learning-rate schedule registries (train.optimizer, train.lr_decay)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from gan import mathops
from gan.sections import choose
from gan.sections.train import TrainConfig


class RMSprop(torch.optim.RMSprop):
    """torch's RMSprop; in portable numerics its square root is IEEE's (gan/mathops.py), since
    torch's reaches MKL's vector math, whose bits differ between CPU vendors. (Adam and SGD
    take ATen's fused kernels, whose square root is ATen's own.)"""

    def step(self, closure=None):
        if not mathops.portable():
            return super().step(closure)
        with mathops.RootOutsideMKL():
            return super().step(closure)


# train.optimizer -> (parameters, lr, betas, fused) -> optimizer; sgd takes betas[0] as
# momentum. ``fused``: one kernel over all parameters (Adam, SGD) where the device has it;
# RMSprop has no fused kernel, so it takes the multi-tensor (foreach) path instead.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr, betas, fused: torch.optim.Adam(params, lr=lr, betas=betas,
                                                              fused=fused or None),
    "rmsprop": lambda params, lr, betas, fused: RMSprop(params, lr=lr, foreach=fused or None),
    "sgd": lambda params, lr, betas, fused: torch.optim.SGD(params, lr=lr, momentum=betas[0],
                                                            fused=fused or None),
}
# Devices with fused Adam and SGD kernels.
FUSED_DEVICES = ("cpu", "cuda")
# train.lr_decay -> (G steps done, all steps) -> learning-rate multiplier.
LR_DECAYS: dict[str, Callable[[int, int], float]] = {
    "constant": lambda done, steps: 1.0,
    "linear": lambda done, steps: 1.0 - done / steps,  # to zero at the last step
}


def optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter], lr: float,
              device_type: str = "cpu") -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` over ``params``, which live on a ``device_type``."""
    fused = device_type in FUSED_DEVICES
    return choose(OPTIMIZERS, "train.optimizer", cfg.optimizer)(params, lr, cfg.betas, fused)


def schedule(cfg: TrainConfig, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    decay = choose(LR_DECAYS, "train.lr_decay", cfg.lr_decay)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda done: decay(done, cfg.steps))
