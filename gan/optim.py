"""Optimizer and learning-rate schedule registries (train.optimizer, train.lr_decay)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from gan.config import TrainConfig, choose

# train.optimizer -> (parameters, lr, betas) -> optimizer; sgd takes betas[0] as momentum.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr, betas: torch.optim.Adam(params, lr=lr, betas=betas),
    "rmsprop": lambda params, lr, betas: torch.optim.RMSprop(params, lr=lr),
    "sgd": lambda params, lr, betas: torch.optim.SGD(params, lr=lr, momentum=betas[0]),
}
# train.lr_decay -> (G steps done, all steps) -> learning-rate multiplier.
LR_DECAYS: dict[str, Callable[[int, int], float]] = {
    "constant": lambda done, steps: 1.0,
    "linear": lambda done, steps: 1.0 - done / steps,  # to zero at the last step
}


def optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter],
              lr: float) -> torch.optim.Optimizer:
    return choose(OPTIMIZERS, "train.optimizer", cfg.optimizer)(params, lr, cfg.betas)


def schedule(cfg: TrainConfig, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    decay = choose(LR_DECAYS, "train.lr_decay", cfg.lr_decay)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda done: decay(done, cfg.steps))
