"""The vanilla fully connected GAN (Goodfellow et al., 2014) as the tutorials build it.

Its discriminator has no normalisation layers, so ``model.d_norm`` does not apply to it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gan import mathops
from gan.models import blocks
from gan.sections.model import ModelConfig


class Generator(nn.Module):
    """z (B, latent_dim), labels (B,) or None -> images (B, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        self.image_shape = image_shape
        self.conditioning = blocks.g_conditioning(cfg, num_classes)
        latent = cfg.latent_dim + self.conditioning.extra_dim
        widths = (128, 256, 512, 1024)
        layers: list[nn.Module] = [nn.Linear(latent, widths[0]), nn.LeakyReLU(0.2)]
        for w_in, w_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Linear(w_in, w_out), nn.BatchNorm1d(w_out), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(widths[-1], math.prod(image_shape)), mathops.Tanh()]
        self.net = nn.Sequential(*layers)  # (B, latent) -> (B, C*H*W)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = self.conditioning.latent(z, labels)
        return self.net(z).view(z.shape[0], *self.image_shape)


class Discriminator(nn.Module):
    """images (B, C, H, W), labels (B,) or None -> logits (B,)."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        self.conditioning = blocks.d_conditioning(cfg, num_classes, image_shape, 256)
        channels, height, width = image_shape
        inputs = (channels + self.conditioning.extra_dim) * height * width
        self.net = nn.Sequential(
            nn.Flatten(),                                  # (B, (C [+1])*H*W)
            nn.Linear(inputs, 512), nn.LeakyReLU(0.2),
            nn.Linear(512, 256), nn.LeakyReLU(0.2),        # (B, 256): the features
            nn.Linear(256, 1),                             # (B, 1)
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conditioning.inputs(x, labels)
        features = self.net[:-1](x)  # (B, 256)
        logits = self.net[-1](features).squeeze(1)  # (B,)
        return self.conditioning.logits(logits, features, labels)
