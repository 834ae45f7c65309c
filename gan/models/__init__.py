"""Architecture registry: ``build(model_cfg, image_shape, num_classes)`` -> (G, D).

Every generator maps ``(z (B, latent_dim), labels (B,) or None) -> (B, C, H, W)`` in
[-1, 1]; every discriminator maps ``(images, labels or None) -> logits (B,)``. Labels are
used only when ``model.conditional`` is true.
"""

from __future__ import annotations

from torch import nn

from gan.config import ConfigError, ModelConfig
from gan.models import dcgan, mlp

# name -> (generator class, discriminator class); each takes (cfg, image_shape, num_classes).
ARCHS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (mlp.Generator, mlp.Discriminator),
    "dcgan": (dcgan.Generator, dcgan.Discriminator),
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
    if cfg.arch not in ARCHS:
        raise ConfigError(f"model.arch: got {cfg.arch!r}, allowed: {', '.join(ARCHS)}")
    g_cls, d_cls = ARCHS[cfg.arch]
    generator = g_cls(cfg, image_shape, num_classes)
    discriminator = d_cls(cfg, image_shape, num_classes)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    return generator, discriminator


def validate(cfg: ModelConfig, train_cfg, image_shape: tuple[int, int, int]) -> None:
    """Refuse, with one line saying why, combinations of params that make no sense."""
    if cfg.arch not in ARCHS:
        raise ConfigError(f"model.arch: got {cfg.arch!r}, allowed: {', '.join(ARCHS)}")
    if train_cfg.label_smoothing and train_cfg.loss not in ("minimax", "non_saturating"):
        raise ConfigError(f"train.label_smoothing: got {train_cfg.label_smoothing}, but it "
                          f"applies to the cross-entropy losses only (minimax, non_saturating)")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["ARCHS", "build", "count_parameters", "init_weights", "validate"]
