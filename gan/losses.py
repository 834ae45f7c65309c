"""GAN losses as pure functions of discriminator outputs; all are minimised.

Sign convention, every loss: D's raw output (a logit, or a critic score) is high for images
it believes real. ``d_loss(real, fake)`` is what D minimises, ``g_loss(fake)`` what G
minimises. Inputs are (B,) tensors; outputs are scalar means over the batch.
Identities used: -log(sigmoid(l)) = softplus(-l), -log(1 - sigmoid(l)) = softplus(l).

Every ``d_loss`` takes ``real_target`` (default 1.0), the target of real images: one-sided
label smoothing (Salimans et al., 2016) passes ``1 - train.label_smoothing``. Only the
cross-entropy losses have a probability target to smooth; the others refuse any other value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gan.sections import choose

Tensor = torch.Tensor


def _unsmoothed(name: str, real_target: float) -> None:
    if real_target != 1.0:
        raise ValueError(f"{name}: real_target must be 1.0 (no label smoothing), "
                         f"got {real_target}")


def bce_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """Binary cross-entropy, targets real_target (real) and 0 (fake).

    At real_target 1: -log D(x) - log(1 - D(G(z))).
    """
    real_term = real_target * F.softplus(-real) + (1.0 - real_target) * F.softplus(real)
    return real_term.mean() + F.softplus(fake).mean()


def minimax_g(fake: Tensor) -> Tensor:
    """log(1 - D(G(z))), the saturating objective of Goodfellow et al. (2014)."""
    return -F.softplus(fake).mean()


def non_saturating_g(fake: Tensor) -> Tensor:
    """-log D(G(z)): the same fixed point as minimax with strong early gradients."""
    return F.softplus(-fake).mean()


def lsgan_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2 on raw outputs (Mao et al., 2017, a-b-c = 0-1-1)."""
    _unsmoothed("lsgan", real_target)
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()


def lsgan_g(fake: Tensor) -> Tensor:
    """0.5 (D(G(z)) - 1)^2."""
    return 0.5 * ((fake - 1.0) ** 2).mean()


def hinge_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z))) (Lim & Ye, 2017; Miyato et al., 2018)."""
    _unsmoothed("hinge", real_target)
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def wasserstein_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """D(G(z)) - D(x): the critic's side of the Wasserstein-1 estimate (Arjovsky et al., 2017).

    D is an unbounded critic score, not a logit; WGAN-GP adds ``gradient_penalty`` to this.
    """
    _unsmoothed("wgan_gp", real_target)
    return fake.mean() - real.mean()


def negated_g(fake: Tensor) -> Tensor:
    """-D(G(z)): G raises the score D gives its images (hinge and Wasserstein G loss)."""
    return -fake.mean()


def gradient_penalty(discriminator: Callable[[Tensor, Tensor | None], Tensor], real: Tensor,
                     fake: Tensor, labels: Tensor | None = None,
                     alpha: Tensor | None = None) -> Tensor:
    """WGAN-GP's penalty (Gulrajani et al., 2017): mean (||grad_x D(x_hat)||_2 - 1)^2.

    x_hat = alpha x + (1 - alpha) G(z) for real and fake (B, C, H, W), alpha (B,) drawn from
    U(0, 1) unless given; ``labels`` are the conditional D's, the class of both real[i] and
    fake[i] (the caller generates the fakes for the real images' classes, since D scores
    each interpolate under one label). The graph is kept (create_graph) so the penalty
    trains D; D adds ``train.gp_weight`` times it to its loss. Fakes are detached: the
    penalty never moves G.
    """
    if alpha is None:
        alpha = torch.rand(real.shape[0], device=real.device)
    alpha = alpha.view(-1, *([1] * (real.ndim - 1))).to(real.dtype)  # (B, 1, 1, 1)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(mixed, labels)  # (B,)
    # Samples are independent in D (no batch norm), so the gradient of the sum is each
    # sample's own gradient.
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grads.flatten(1).norm(2, dim=1)  # (B,)
    return ((norms - 1.0) ** 2).mean()


def r1_penalty(discriminator: Callable[[Tensor, Tensor | None], Tensor], real: Tensor,
               labels: Tensor | None = None) -> Tensor:
    """R1 (Mescheder et al., 2018): mean ||grad_x D(x)||_2^2 at real images x.

    ``real`` (B, C, H, W), ``labels`` (B,) their classes for a conditional D. Penalising
    D's gradient on the data alone makes training converge locally to a G that matches the
    data, where unregularised training can circle around it (their Dirac-GAN). It needs no
    fakes and suits any loss. The graph is kept (create_graph) so the penalty trains D; D
    adds ``train.r1_weight / 2`` times it to its loss (their gamma / 2). The images are
    detached: nothing flows back to them.
    """
    x = real.detach().requires_grad_(True)
    scores = discriminator(x, labels)  # (B,)
    # The gradient of the batch's summed scores: each sample's own gradient exactly only
    # when samples are independent in D; with batch norm in D it also holds every other
    # sample's effect on this one through the batch statistics.
    (grads,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grads.flatten(1).pow(2).sum(dim=1).mean()


def pair_halves(n: int) -> tuple[slice, slice]:
    """The rows paired by ``mode_seeking`` in a batch of ``n``: [0, n//2) with the next n//2."""
    half = n // 2
    return slice(0, half), slice(half, 2 * half)


def mode_seeking(images: Tensor, z: Tensor, eps: float = 1e-5) -> Tensor:
    """Mode-seeking term (Mao et al., 2019): 1 / (mean|x1 - x2| / mean|z1 - z2| + eps).

    Pairs are the first and second halves of ``images`` (B, ...) and their latents ``z``
    (B, D); an odd last row is left out. The ratio is how far G moves its images per unit
    of latent distance; G minimises ``train.mode_seeking`` times this term, so latents that
    differ must give images that differ. For a conditional G both halves share labels.
    """
    if images.shape[0] < 2:
        raise ValueError("mode_seeking needs at least 2 images to pair, got 1")
    first, second = pair_halves(images.shape[0])
    image_gap = (images[first] - images[second]).abs().mean()
    latent_gap = (z[first] - z[second]).abs().mean()
    return 1.0 / (image_gap / latent_gap + eps)


@dataclass(frozen=True)
class Loss:
    d: Callable[..., Tensor]  # (real (B,), fake (B,), real_target=1.0) -> scalar
    g: Callable[[Tensor], Tensor]  # fake (B,) -> scalar
    probabilistic: bool  # D's output is a logit, so sigmoid(output) reads as P(real)
    threshold: float  # D calls an image real when its output is above this
    gradient_penalty: bool = False  # D's loss needs gp_weight * gradient_penalty(...) added
    label_smoothing: bool = False  # d accepts real_target < 1 (one-sided label smoothing)


LOSSES: dict[str, Loss] = {
    "minimax": Loss(bce_d, minimax_g, True, 0.0, label_smoothing=True),
    "non_saturating": Loss(bce_d, non_saturating_g, True, 0.0, label_smoothing=True),
    "lsgan": Loss(lsgan_d, lsgan_g, False, 0.5),
    "hinge": Loss(hinge_d, negated_g, False, 0.0),
    "wgan_gp": Loss(wasserstein_d, negated_g, False, 0.0, gradient_penalty=True),
}


def get(name: str) -> Loss:
    return choose(LOSSES, "train.loss", name)
