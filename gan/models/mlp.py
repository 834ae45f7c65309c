"""The vanilla fully connected GAN (Goodfellow et al., 2014) as the tutorials build it."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan.config import ModelConfig


class Generator(nn.Module):
    """z (B, latent_dim) -> images (B, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        self.image_shape = image_shape
        widths = (128, 256, 512, 1024)
        layers: list[nn.Module] = [nn.Linear(cfg.latent_dim, widths[0]), nn.LeakyReLU(0.2)]
        for w_in, w_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Linear(w_in, w_out), nn.BatchNorm1d(w_out), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(widths[-1], math.prod(image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)  # (B, latent) -> (B, C*H*W)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class Discriminator(nn.Module):
    """images (B, C, H, W) -> logits (B,)."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),                                  # (B, C*H*W)
            nn.Linear(math.prod(image_shape), 512), nn.LeakyReLU(0.2),
            nn.Linear(512, 256), nn.LeakyReLU(0.2),
            nn.Linear(256, 1),                             # (B, 1)
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)
