"""Sample grids from a trained generator."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid


def fixed_latent(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """(n, latent_dim) standard normal noise drawn on the CPU, so every device sees the same."""
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Images (n, C, H, W) in [-1, 1] on the CPU, generated in batches."""
    device = next(generator.parameters()).device
    parts = [generator(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]
    return torch.cat(parts)


def to_grid_image(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A PIL image of ``images`` (n, C, H, W) in [-1, 1] tiled ``nrow`` per row."""
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    grid = make_grid(images.clamp(-1, 1), nrow=nrow, padding=padding, pad_value=1.0)
    pixels = grid.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)  # (C, H, W)
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if images.shape[1] == 1 else array)


def save_png(image: Image.Image, path: Path) -> None:
    """Write a PNG atomically, so a failure never leaves a half-written picture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
