"""DCGAN (Radford et al., 2015): transposed convolutions up, strided convolutions down.

The spatial ladder starts at 7 px for sizes divisible by 7 (28 px) and at 4 px otherwise
(32, 64 px), doubling or halving once per block; channel widths double away from the image.
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
    return names.ladder(image_size, "dcgan")  # bases in gan.names.ARCHS


class LatentToMap(nn.ConvTranspose2d):
    """(B, latent, 1, 1) -> (B, width, base, base): the transposed convolution of a 1x1 input
    by a base x base kernel, computed as the single matrix product it is.

    The same parameter, initialisation and state_dict as nn.ConvTranspose2d, and on the CPU
    the same bits; oneDNN's transposed convolution takes about 2.4x as long for this shape
    (docs/performance.md, "Where the train step's time goes"). A channels_last weight gives
    a channels_last map, without copies.
    """

    def __init__(self, latent: int, width: int, base: int):
        super().__init__(latent, width, base, 1, 0, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[2:] != (1, 1):
            raise ValueError(f"LatentToMap takes (B, {self.in_channels}, 1, 1), got "
                             f"{tuple(z.shape)}")
        batch, (width, size, _) = z.shape[0], self.weight.shape[1:]
        w = self.weight
        # weight (latent, width, k, k); channels_last stores it as (latent, k, k, width)
        if w.is_contiguous():
            out = (z.flatten(1) @ w.flatten(1)).view(batch, width, size, size)
        else:
            rows = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # a view for channels_last
            out = (z.flatten(1) @ rows).view(batch, size, size, width).permute(0, 3, 1, 2)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class Generator(nn.Module):
    """z (B, latent_dim), labels (B,) or None -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, n_blocks = ladder(size)
        self.conditioning = blocks.g_conditioning(cfg, num_classes)
        width = cfg.g_channels * 2 ** (n_blocks - 1)
        latent = cfg.latent_dim + self.conditioning.extra_dim
        layers: list[nn.Module] = [
            # (B, latent, 1, 1) -> (B, width, base, base)
            LatentToMap(latent, width, base),
            nn.BatchNorm2d(width), nn.ReLU(True),
        ]
        for _ in range(n_blocks - 1):  # each: (B, w, s, s) -> (B, w/2, 2s, 2s)
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        # (B, g_channels, S/2, S/2) -> (B, C, S, S)
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), mathops.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = self.conditioning.latent(z, labels)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """images (B, C, S, S), labels (B,) or None -> logits (B,)."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, n_blocks = ladder(size)
        width = cfg.d_channels
        top = width * 2 ** (n_blocks - 1)
        self.conditioning = blocks.d_conditioning(cfg, num_classes, image_shape, top)
        channels += self.conditioning.extra_dim
        # A norm's shift makes the conv bias redundant; without a norm the bias is kept.
        bias = cfg.d_norm == "none"
        norm = choose(blocks.NORMS, "model.d_norm", cfg.d_norm)  # (channels) -> norm layer
        # No norm on the first block (Radford et al.): (B, C, S, S) -> (B, w, S/2, S/2)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(n_blocks - 1):  # each: (B, w, s, s) -> (B, 2w, s/2, s/2)
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=bias),
                       norm(width * 2), nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, base, 1, 0)]  # (B, w, base, base) -> (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conditioning.inputs(x, labels)
        features = self.net[:-1](x)  # (B, w, base, base)
        logits = self.net[-1](features).flatten()  # (B,)
        # Projection meets the spatially summed features, as in Miyato & Koyama's ResNet D.
        return self.conditioning.logits(logits, features.sum(dim=(2, 3)), labels)
