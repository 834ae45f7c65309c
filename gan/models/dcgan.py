"""DCGAN (Radford et al., 2015): transposed convolutions up, strided convolutions down.

The spatial ladder starts at 7 px for sizes divisible by 7 (28 px) and at 4 px otherwise
(32, 64 px), doubling or halving once per block; channel widths double away from the image.
"""

from __future__ import annotations

import torch
from torch import nn

from gan.config import ConfigError, ModelConfig


def ladder(image_size: int) -> tuple[int, int]:
    """(base size, number of doubling blocks) with base * 2**blocks == image_size."""
    base = 7 if image_size % 7 == 0 else 4
    blocks, size = 0, base
    while size < image_size:
        size, blocks = size * 2, blocks + 1
    if size != image_size or blocks < 1:
        raise ConfigError(f"data.image_size: got {image_size}, dcgan needs 7 or 4 times a "
                          f"power of two (e.g. 28, 32, 64)")
    return base, blocks


class Generator(nn.Module):
    """z (B, latent_dim) -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, blocks = ladder(size)
        width = cfg.g_channels * 2 ** (blocks - 1)
        layers: list[nn.Module] = [
            # (B, latent, 1, 1) -> (B, width, base, base)
            nn.ConvTranspose2d(cfg.latent_dim, width, base, 1, 0, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(True),
        ]
        for _ in range(blocks - 1):  # each: (B, w, s, s) -> (B, w/2, 2s, 2s)
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        # (B, g_channels, S/2, S/2) -> (B, C, S, S)
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """images (B, C, S, S) -> logits (B,)."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, blocks = ladder(size)
        width = cfg.d_channels
        # No batch norm on the first block (Radford et al.): (B, C, S, S) -> (B, w, S/2, S/2)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(blocks - 1):  # each: (B, w, s, s) -> (B, 2w, s/2, s/2)
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, base, 1, 0)]  # (B, w, base, base) -> (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).flatten()
