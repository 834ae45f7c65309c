"""Architecture registry: ``build(model_cfg, image_shape, num_classes)`` -> (G, D).

Every generator maps ``(z (B, latent_dim), labels (B,) or None) -> (B, C, H, W)`` in
[-1, 1]; every discriminator maps ``(images, labels or None) -> logits (B,)``. Labels are
used only when ``model.conditional`` is true; then they are required.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from gan.models import blocks, dcgan, mlp, resize_conv
from gan.sections import choose
from gan.sections.model import ModelConfig


class Arch(NamedTuple):
    """An architecture's two classes; each takes (cfg, image_shape, num_classes)."""

    generator: type[nn.Module]
    discriminator: type[nn.Module]


ARCHS: dict[str, Arch] = {
    "mlp": Arch(mlp.Generator, mlp.Discriminator),
    "dcgan": Arch(dcgan.Generator, dcgan.Discriminator),
    "resize_conv": Arch(resize_conv.Generator, resize_conv.Discriminator),
}
# arch -> its image size check (raises ConfigError; the bases are gan.names.ARCHS'); the mlp
# takes any size.
LADDERS: dict[str, Callable[[int], tuple[int, int]]] = {
    "dcgan": dcgan.ladder,
    "resize_conv": resize_conv.ladder,
}
# model.noise -> (shape, device, generator) -> latent batch.
NOISES: dict[str, Callable[..., torch.Tensor]] = {
    "normal": lambda shape, device, gen: torch.randn(shape, device=device, generator=gen),
    "uniform": lambda shape, device, gen: torch.rand(shape, device=device, generator=gen)
    .mul_(2).sub_(1),
}


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv and linear weights, N(1, 0.02) for norm scales (Radford et al.)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build(cfg: ModelConfig, image_shape: tuple[int, int, int],
          num_classes: int = 10) -> tuple[nn.Module, nn.Module]:
    """A freshly initialised generator and discriminator for images of ``image_shape``."""
    arch = choose(ARCHS, "model.arch", cfg.arch)
    generator = arch.generator(cfg, image_shape, num_classes)
    discriminator = arch.discriminator(cfg, image_shape, num_classes)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    if cfg.spectral_norm:
        blocks.add_spectral_norm(discriminator)
    return generator, discriminator


def standing_statistics(generator: nn.Module, cfg: ModelConfig, num_classes: int,
                        batch_size: int, batches: int, gen: torch.Generator) -> None:
    """Set the batch-norm running statistics of ``generator`` to those of its own weights.

    "Standing statistics" (Brock et al., 2019, BigGAN): the running mean and variance of an
    averaged generator, which it uses in eval mode, are not the average of the trained
    generator's, but an estimate made with the averaged weights themselves: each batch-norm
    layer is reset, then ``batches`` no-grad passes of ``batch_size`` latents (and, for a
    conditional G, classes drawn uniformly) feed it in train mode with momentum None, so its
    buffers become the plain mean of the batches' statistics. Every draw comes from ``gen``
    (on the generator's device), so the global RNG is untouched. Leaves G in eval mode.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    generator.train()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the passes
    try:
        with torch.no_grad():
            for _ in range(batches if norms else 0):
                z = latent_noise(cfg.noise, batch_size, cfg.latent_dim, gen.device, gen)
                labels = (torch.randint(num_classes, (batch_size,), device=gen.device,
                                        generator=gen) if cfg.conditional else None)
                generator(z, labels)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        generator.eval()


def latent_noise(kind: str, n: int, latent_dim: int, device: torch.device | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, latent_dim) noise of ``model.noise``: N(0, 1), or uniform in [-1, 1]."""
    return choose(NOISES, "model.noise", kind)((n, latent_dim), device, generator)


__all__ = ["ARCHS", "Arch", "LADDERS", "NOISES", "build", "init_weights", "latent_noise",
           "standing_statistics"]
