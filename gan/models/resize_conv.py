"""The upsample-plus-convolution DCGAN of the Keras tutorials.

G: a dense layer to a small map (7 px for 28, 8 px for 32 and 64 px), then blocks of
nearest-neighbour upsampling and a same-padded convolution, which avoid the checkerboard
artefacts of transposed convolutions (Odena et al., 2016). D: strided convolutions with
LeakyReLU(0.2) and dropout, no pooling, then a dense logit.
"""

from __future__ import annotations

import torch
from torch import nn

from gan import mathops, names
from gan.models import blocks
from gan.sections import choose
from gan.sections.model import ModelConfig


def ladder(image_size: int) -> tuple[int, int]:
    """(base size, number of doubling blocks) with base * 2**blocks == image_size."""
    return names.ladder(image_size, "resize_conv")  # bases in gan.names.ARCHS


class Generator(nn.Module):
    """z (B, latent_dim), labels (B,) or None -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, n_blocks = ladder(size)
        self.conditioning = blocks.g_conditioning(cfg, num_classes)
        latent = cfg.latent_dim + self.conditioning.extra_dim
        width = cfg.g_channels * 2**n_blocks
        self.map_shape = (width, base, base)
        self.dense = nn.Sequential(  # (B, latent) -> (B, width * base * base)
            nn.Linear(latent, width * base * base, bias=False),
            nn.BatchNorm1d(width * base * base), nn.ReLU(True),
        )
        pad = cfg.kernel_size // 2
        layers: list[nn.Module] = []
        for _ in range(n_blocks):  # each: (B, w, s, s) -> (B, w/2, 2s, 2s)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(width, width // 2, cfg.kernel_size, 1, pad, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        # (B, g_channels, S, S) -> (B, C, S, S)
        layers += [nn.Conv2d(width, channels, cfg.kernel_size, 1, pad), mathops.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = self.conditioning.latent(z, labels)
        return self.net(self.dense(z).view(z.shape[0], *self.map_shape))


class Discriminator(nn.Module):
    """images (B, C, S, S), labels (B,) or None -> logits (B,)."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, n_blocks = ladder(size)
        top = cfg.d_channels * 2 ** (n_blocks - 1)
        self.conditioning = blocks.d_conditioning(cfg, num_classes, image_shape, top)
        channels += self.conditioning.extra_dim
        bias = cfg.d_norm == "none"  # a norm's shift makes the conv bias redundant
        norm = choose(blocks.NORMS, "model.d_norm", cfg.d_norm)  # (channels) -> norm layer
        pad = cfg.kernel_size // 2
        width = cfg.d_channels
        # No norm on the first block, as in DCGAN: (B, C, S, S) -> (B, w, S/2, S/2)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, cfg.kernel_size, 2, pad),
                                   nn.LeakyReLU(0.2, True), nn.Dropout(cfg.dropout)]
        for _ in range(n_blocks - 1):  # each: (B, w, s, s) -> (B, 2w, s/2, s/2)
            layers += [nn.Conv2d(width, width * 2, cfg.kernel_size, 2, pad, bias=bias),
                       norm(width * 2), nn.LeakyReLU(0.2, True),
                       nn.Dropout(cfg.dropout)]
            width *= 2
        self.net = nn.Sequential(*layers)  # (B, top, base, base)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * base * base, 1))  # (B, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conditioning.inputs(x, labels)
        features = self.net(x)  # (B, top, base, base)
        logits = self.head(features).squeeze(1)  # (B,)
        return self.conditioning.logits(logits, features.sum(dim=(2, 3)), labels)
