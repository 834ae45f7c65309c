"""GAN losses as pure functions of discriminator outputs; all are minimised.

Sign convention, every loss: D's raw output (a logit, or a critic score) is high for images
it believes real. ``d_loss(real, fake)`` is what D minimises, ``g_loss(fake)`` what G
minimises. Inputs are (B,) tensors; outputs are scalar means over the batch.
Identities used: -log(sigmoid(l)) = softplus(-l), -log(1 - sigmoid(l)) = softplus(l).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gan.config import ConfigError

Tensor = torch.Tensor


def bce_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """Binary cross-entropy, targets ``real_target`` (real) and 0 (fake).

    With real_target 1 this is -log D(x) - log(1 - D(G(z))); below 1 it is one-sided label
    smoothing (Salimans et al., 2016).
    """
    t = real_target
    return (t * F.softplus(-real) + (1 - t) * F.softplus(real)).mean() + F.softplus(fake).mean()


def minimax_g(fake: Tensor) -> Tensor:
    """log(1 - D(G(z))), the saturating objective of Goodfellow et al. (2014)."""
    return -F.softplus(fake).mean()


def non_saturating_g(fake: Tensor) -> Tensor:
    """-log D(G(z)): the same fixed point as minimax with strong early gradients."""
    return F.softplus(-fake).mean()


def lsgan_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2 on raw outputs (Mao et al., 2017, a-b-c = 0-1-1)."""
    return 0.5 * ((real - real_target) ** 2).mean() + 0.5 * (fake**2).mean()


def lsgan_g(fake: Tensor) -> Tensor:
    """0.5 (D(G(z)) - 1)^2."""
    return 0.5 * ((fake - 1.0) ** 2).mean()


def hinge_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z))) (Lim & Ye, 2017); real_target must be 1."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def negated_g(fake: Tensor) -> Tensor:
    """-D(G(z)): G raises the score D gives its images (hinge and Wasserstein G loss)."""
    return -fake.mean()


@dataclass(frozen=True)
class Loss:
    d: Callable[..., Tensor]  # (real, fake, real_target=1.0) -> scalar
    g: Callable[[Tensor], Tensor]
    probabilistic: bool  # D's output is a logit, so sigmoid(output) reads as P(real)
    threshold: float  # D calls an image real when its output is above this
    gradient_penalty: bool = False  # the loop adds gp_weight * gradient_penalty(...)


LOSSES: dict[str, Loss] = {
    "minimax": Loss(bce_d, minimax_g, True, 0.0),
    "non_saturating": Loss(bce_d, non_saturating_g, True, 0.0),
    "lsgan": Loss(lsgan_d, lsgan_g, False, 0.5),
    "hinge": Loss(hinge_d, negated_g, False, 0.0),
}


def get(name: str) -> Loss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"train.loss: got {name!r}, allowed: {', '.join(LOSSES)}") from None
