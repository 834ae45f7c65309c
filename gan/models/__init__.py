"""Architecture registry: ``build(model_cfg, image_shape, num_classes)`` -> (G, D).

Every generator maps ``(z (B, latent_dim), labels (B,) or None) -> (B, C, H, W)`` in
[-1, 1]; every discriminator maps ``(images, labels or None) -> logits (B,)``. Labels are
used only when ``model.conditional`` is true; then they are required.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gan import losses
from gan.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from gan.models import blocks, dcgan, mlp, resize_conv

# name -> (generator class, discriminator class); each takes (cfg, image_shape, num_classes).
ARCHS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (mlp.Generator, mlp.Discriminator),
    "dcgan": (dcgan.Generator, dcgan.Discriminator),
    "resize_conv": (resize_conv.Generator, resize_conv.Discriminator),
}
# arch -> its image size check (raises ConfigError); the mlp takes any size.
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


def _arch(name: str) -> tuple[type[nn.Module], type[nn.Module]]:
    if name not in ARCHS:
        raise ConfigError(f"model.arch: got {name!r}, allowed: {', '.join(ARCHS)}")
    return ARCHS[name]


def build(cfg: ModelConfig, image_shape: tuple[int, int, int],
          num_classes: int = 10) -> tuple[nn.Module, nn.Module]:
    """A freshly initialised generator and discriminator for images of ``image_shape``."""
    g_cls, d_cls = _arch(cfg.arch)
    generator = g_cls(cfg, image_shape, num_classes)
    discriminator = d_cls(cfg, image_shape, num_classes)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    if cfg.spectral_norm:
        blocks.add_spectral_norm(discriminator)
    return generator, discriminator


def latent_noise(kind: str, n: int, latent_dim: int, device: torch.device | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, latent_dim) noise of ``model.noise``: N(0, 1), or uniform in [-1, 1]."""
    if kind not in NOISES:
        raise ConfigError(f"model.noise: got {kind!r}, allowed: {', '.join(NOISES)}")
    return NOISES[kind]((n, latent_dim), device, generator)


def _check_norm_for_penalty(m: ModelConfig, t: TrainConfig, d: DataConfig | None) -> str | None:
    if losses.get(t.loss).gradient_penalty and _arch(m.arch)[1].uses_d_norm \
            and m.d_norm == "batch":
        return (f"train.loss: {t.loss} penalises per-sample gradients, which batch norm in D "
                f"couples; set model.d_norm to layer or none")
    return None


def _check_penalty_weight(m: ModelConfig, t: TrainConfig, d: DataConfig | None) -> str | None:
    if losses.get(t.loss).gradient_penalty and t.gp_weight == 0:
        return (f"train.gp_weight: got 0.0, but {t.loss} without its penalty leaves the critic "
                f"unconstrained; set it above 0 (10.0 in Gulrajani et al.)")
    return None


def _check_norm_exists(m: ModelConfig, t: TrainConfig, d: DataConfig | None) -> str | None:
    if m.d_norm == "layer" and not _arch(m.arch)[1].uses_d_norm:
        return (f"model.d_norm: got 'layer', but {m.arch}'s discriminator has no "
                f"normalisation layers; set none, or use dcgan or resize_conv")
    return None


def _check_smoothing(m: ModelConfig, t: TrainConfig, d: DataConfig | None) -> str | None:
    if t.label_smoothing > 0 and not losses.get(t.loss).label_smoothing:
        smoothable = ", ".join(k for k, v in losses.LOSSES.items() if v.label_smoothing)
        return (f"train.label_smoothing: got {t.label_smoothing}, but {t.loss} has no "
                f"probability target to smooth (only {smoothable}); set it to 0.0")
    return None


def _check_image_size(m: ModelConfig, t: TrainConfig, d: DataConfig | None) -> str | None:
    if d is not None and m.arch in LADDERS:
        try:
            LADDERS[m.arch](d.image_size)
        except ConfigError as exc:
            return str(exc)
    return None


def _check_data(m: ModelConfig, t: TrainConfig, d: DataConfig | None) -> str | None:
    if d is None:
        return None
    if d.dataset == "image_folder" and d.path is None:
        return "data.path: missing; data.dataset: image_folder reads the folder it names"
    if d.dataset != "image_folder" and d.channels is not None:
        return (f"data.channels: got {d.channels}, but {d.dataset} is grayscale; set null "
                f"(it applies to image_folder only)")
    return None


def _check_mode_seeking(m: ModelConfig, t: TrainConfig, d: DataConfig | None) -> str | None:
    if t.mode_seeking > 0 and t.batch_size // t.devices < 2:
        return (f"train.mode_seeking: got {t.mode_seeking}, but it pairs images within each "
                f"process's batch, which has {t.batch_size // t.devices}; raise "
                f"train.batch_size to at least {2 * t.devices} or set it to 0.0")
    return None


RULES = (_check_norm_for_penalty, _check_penalty_weight, _check_norm_exists,
         _check_smoothing, _check_image_size, _check_data, _check_mode_seeking)


def validate(model_cfg: ModelConfig, train_cfg: TrainConfig,
             data_cfg: DataConfig | None = None) -> None:
    """Raise ConfigError, one line saying why, on a params combination that makes no sense."""
    _arch(model_cfg.arch)
    losses.get(train_cfg.loss)
    for rule in RULES:
        message = rule(model_cfg, train_cfg, data_cfg)
        if message is not None:
            raise ConfigError(message)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["ARCHS", "NOISES", "build", "count_parameters", "init_weights",
           "latent_noise", "validate"]
