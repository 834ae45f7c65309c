"""Batches for training: drawn by indexing a device-resident tensor, never a DataLoader.

The whole prepared split fits in device memory; the GAN's trainer and the judge's draw their
batches from it here. A module of its own so that the data stages (download, prepare), which
import gan.data, do not depend on training code.
"""

from __future__ import annotations

import torch

from gan.errors import GanError


class DeviceBatches:
    """Batches drawn by indexing a device-resident tensor with a seeded permutation.

    Epoch e uses the permutation of torch.Generator seeded with (seed, e), so the position
    in the data order is just the number of batches drawn: resumable without saved state.
    With ``world`` processes, ``batch_size`` is the global batch and process ``rank`` takes
    its own disjoint slice of each one (batch_size // world images).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 seed: int, device: torch.device, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise GanError(f"train.batch_size: got {batch_size}, must be a multiple of the "
                           f"{world} processes (each takes an equal share)")
        if batch_size > images.shape[0]:
            raise GanError(f"train.batch_size: got {batch_size}, must be at most the "
                           f"{images.shape[0]} training images")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.per_epoch = images.shape[0] // batch_size  # the ragged tail is dropped
        self.drawn = 0
        self.share = batch_size // world
        self.offset = rank * self.share
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.images.shape[0], generator=gen).to(self.device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = divmod(self.drawn, self.per_epoch)
        if epoch != self._epoch:
            self._perm, self._epoch = self._permutation(epoch), epoch
        start = index * self.batch_size + self.offset
        idx = self._perm[start:start + self.share]
        self.drawn += 1
        return self.images[idx], self.labels[idx]
