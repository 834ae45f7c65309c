"""Differentiable augmentation of D's inputs for small datasets (train.augment).

Zhao et al. (2020), "Differentiable Augmentation for Data-Efficient GAN Training": every
image D sees, real or generated, in D's step and in G's, goes through the same kind of
random transform first. The transforms are made of differentiable tensor operations, so G's
gradient flows back through them; D never sees an unaugmented image, so it cannot learn the
few real images by heart as easily, and G is not pushed towards the transforms either,
since its own images are transformed too. Their three policies and strengths:

    color        brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)
    translation  a shift of up to 1/8 of the side in each direction, the gap filled with 0
    cutout       a square of half the side at a random centre set to 0 (it may overhang)

Every draw comes from the ``Augment`` object's own seeded torch.Generator, whose state the
resumable checkpoint keeps, so a resumed run draws what an uninterrupted one does. Under
DDP every rank draws the whole batch's parameters and keeps its own rows, as gan.state's
``Noise`` does for latents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from gan.sections import choose

TRANSLATION = 1 / 8  # the largest shift, as a share of the side
CUTOUT = 1 / 2  # the cut square's side, as a share of the image's


class Draws:
    """Per-image random parameters for one batch: drawn for the whole batch of ``total``
    images from ``gen``, this rank's rows (``share``) kept."""

    def __init__(self, gen: torch.Generator, total: int, share: slice | None):
        self.gen, self.total, self.share = gen, total, share

    def _rows(self, values: torch.Tensor) -> torch.Tensor:
        return values if self.share is None else values[self.share]

    def uniform(self, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, 1, 1) values from U(low, high), in ``like``'s dtype and device."""
        u = torch.rand(self.total, generator=self.gen, device=self.gen.device)
        return self._rows(low + (high - low) * u).to(like.dtype).view(-1, 1, 1, 1)

    def integers(self, low: int, high: int) -> torch.Tensor:
        """(B, 1, 1) integers from [low, high)."""
        n = torch.randint(low, high, (self.total,), generator=self.gen, device=self.gen.device)
        return self._rows(n).view(-1, 1, 1)


def color(x: torch.Tensor, draw: Draws) -> torch.Tensor:
    """Brightness, saturation, then contrast, one random factor of each per image."""
    x = x + draw.uniform(-0.5, 0.5, x)
    channel_mean = x.mean(dim=1, keepdim=True)  # grayscale: x itself, so saturation is a no-op
    x = (x - channel_mean) * draw.uniform(0.0, 2.0, x) + channel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * draw.uniform(0.5, 1.5, x) + image_mean


def translation(x: torch.Tensor, draw: Draws) -> torch.Tensor:
    """Shift each image by whole pixels, up to TRANSLATION of its side each way; pixels
    shifted in from outside are 0."""
    _, _, height, width = x.shape
    dy, dx = int(height * TRANSLATION + 0.5), int(width * TRANSLATION + 0.5)
    shift_y, shift_x = draw.integers(-dy, dy + 1), draw.integers(-dx, dx + 1)
    padded = F.pad(x, [dx, dx, dy, dy])
    # out[b, :, i, j] = x[b, :, i + shift_y[b], j + shift_x[b]], read from the padded copy.
    rows = torch.arange(height, device=x.device).view(1, -1, 1) + shift_y + dy  # (B, H, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1) + shift_x + dx  # (B, 1, W)
    batch = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)
    # Advanced indices around a slice put the indexed dims first: (B, H, W, C).
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, draw: Draws) -> torch.Tensor:
    """Set a square of CUTOUT of the side, centred anywhere in the image, to 0."""
    _, _, height, width = x.shape
    size_y, size_x = int(height * CUTOUT + 0.5), int(width * CUTOUT + 0.5)
    top = draw.integers(0, height) - size_y // 2  # (B, 1, 1)
    left = draw.integers(0, width) - size_x // 2
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    inside = ((rows >= top) & (rows < top + size_y)) & ((cols >= left) & (cols < left + size_x))
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES: dict[str, Callable[[torch.Tensor, Draws], torch.Tensor]] = {
    "color": color, "translation": translation, "cutout": cutout}


def augment_seed(seed: int) -> int:
    """The seed of the augmentation draws: a stream apart from every other of the run."""
    digest = hashlib.sha256(f"augment {seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # below 2**63


class Augment:
    """train.augment's policies, applied in their order to every batch D scores."""

    def __init__(self, policies: Sequence[str], seed: int, device: torch.device, total: int,
                 share: slice | None = None):
        self.policies = tuple(policies)
        self.ops = [choose(POLICIES, "train.augment", name) for name in self.policies]
        self.gen = torch.Generator(device=device).manual_seed(augment_seed(seed))
        self.total, self.share = total, share

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The batch (B, C, H, W), transformed; differentiable in ``images``."""
        draw = Draws(self.gen, self.total, self.share)
        layout = (torch.channels_last if images.is_contiguous(memory_format=torch.channels_last)
                  and not images.is_contiguous() else torch.contiguous_format)
        for op in self.ops:
            images = op(images, draw)
        return images.contiguous(memory_format=layout)
