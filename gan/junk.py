"""Junk: images no generator should be praised for, made from a seed and real images.

The evaluate stage and gan-score score each kind through the judge beside the samples and
the real floor (gan.metrics.junk_scores); a score under which junk looks as good as real
images is flagged. The classifier stage's gate (``blind_to_junk``) stops a judge that
cannot tell noise from real images.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gan import mathops
from gan.classifier import extract, knn_radii

# The kinds: uniform noise, one flat colour per image, real images blurred (a Gaussian of
# BLUR_SIGMA of the side: 2 px at 28 px, shapes gone to soft blobs) and real images cut
# into SHUFFLE_GRID x SHUFFLE_GRID patches put back in a random order (every pixel real,
# no shape whole).
JUNK_KINDS = ("noise", "constant", "blurred", "shuffled")
BLUR_SIGMA = 1 / 14
SHUFFLE_GRID = 4

# The junk the classifier stage's gate tries: any judge should tell it from images. Flat
# images are scored and flagged at evaluate time but stop no judge: Fashion-MNIST's default
# judge of 2026-12-07 puts flat greys inside the test images' manifold as often as real
# images (a flat grey is not far from a large plain garment), yet tells noise apart.
GATE_JUNK = ("noise",)
GATE_IMAGES = 2000  # at most this many of each, real and junk, in the gate


def junk_images(images: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """As many images (N, C, S, S) in [-1, 1] of junk ``kind`` (JUNK_KINDS) as ``images``
    (real ones, the source of blurred and shuffled), seeded by ``seed`` and the kind."""
    gen = torch.Generator().manual_seed(seed * len(JUNK_KINDS) + JUNK_KINDS.index(kind))
    n, channels, size, _ = images.shape
    if kind == "noise":
        return torch.rand(images.shape, generator=gen) * 2 - 1
    if kind == "constant":  # black, white and every grey (or colour) between
        return (torch.rand(n, channels, 1, 1, generator=gen) * 2 - 1).expand(
            images.shape).contiguous()
    if kind == "blurred":  # torchvision's gaussian_blur, its kernel's exp by gan.mathops
        sigma = BLUR_SIGMA * size
        half = math.ceil(3 * sigma)
        pdf = mathops.exp(-0.5 * (torch.linspace(-half, half, 2 * half + 1) / sigma) ** 2)
        line = pdf / pdf.sum()
        weight = (line[:, None] * line[None, :]).expand(channels, 1, -1, -1)
        padded = F.pad(images, [half] * 4, mode="reflect")
        return F.conv2d(padded, weight.to(images.dtype), groups=channels)
    if kind == "shuffled":
        side = size // SHUFFLE_GRID
        out = images.clone()
        cells = SHUFFLE_GRID * SHUFFLE_GRID
        crop = images[:, :, :side * SHUFFLE_GRID, :side * SHUFFLE_GRID]
        # (N, C, g, side, g, side) -> (N, g*g, C, side, side): one row per patch
        patches = crop.reshape(n, channels, SHUFFLE_GRID, side, SHUFFLE_GRID, side).permute(
            0, 2, 4, 1, 3, 5).reshape(n, cells, channels, side, side)
        order = torch.argsort(torch.rand(n, cells, generator=gen), dim=1)
        patches = patches[torch.arange(n)[:, None], order]
        out[:, :, :side * SHUFFLE_GRID, :side * SHUFFLE_GRID] = patches.reshape(
            n, SHUFFLE_GRID, SHUFFLE_GRID, channels, side, side).permute(
            0, 3, 1, 4, 2, 5).reshape(n, channels, side * SHUFFLE_GRID, side * SHUFFLE_GRID)
        return out
    raise ValueError(f"unknown junk {kind!r}")


def blind_to_junk(judge: nn.Module, train_data: dict, test_data: dict, seed: int,
                  batch_size: int = 500) -> str:
    """The kinds of GATE_JUNK that lie inside the test images' manifold (precision's) at
    least as often as real training images do, joined by " and "; "" for a judge that
    tells each from images. GATE_IMAGES at most of each, drawn by ``seed``."""
    test_feats, _ = extract(judge, test_data["images"], batch_size)
    radii = knn_radii(test_feats)
    n = min(GATE_IMAGES, train_data["images"].shape[0], test_data["images"].shape[0])
    gen = torch.Generator().manual_seed(seed)
    real = train_data["images"][torch.randperm(train_data["images"].shape[0], generator=gen)[:n]]
    source = test_data["images"][torch.randperm(test_data["images"].shape[0], generator=gen)[:n]]

    def inside(images: torch.Tensor) -> float:
        feats, _ = extract(judge, images, batch_size)
        return float(torch.cat([(mathops.cdist(part.float(), test_feats.float()) <= radii)
                                .any(dim=1) for part in feats.split(1000)]).double().mean())

    floor = inside(real)
    return " and ".join(kind for kind in GATE_JUNK
                        if inside(junk_images(source, kind, seed)) >= floor)
