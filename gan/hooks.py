"""Periodic training hooks: what the loop calls every so many steps with the shown generator.

A hook is called as ``hook(step, generator)`` every ``hook.every`` steps and at the last
one, with the (EMA) generator in eval mode and under a forked RNG, so that it cannot change
training. A hook with ``metrics`` true returns {name: value} to log at that step; one that
must survive a resume is also ``Stateful``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import nn

from gan.errors import GanError
from gan.io import write_atomic
from gan.sample import fixed_latent, generate, grid_labels, to_grid_image
from gan.sections.model import ModelConfig

# Grids of the training snapshots: the train stage reads no sample.* params, so its fixed
# batch is set here (seeded by the run's seed).
EVOLUTION_N = 64
# The names of the snapshots, the only files a restored state may write.
SNAPSHOT_NAME = re.compile(r"step_\d{6,}\.png")


@runtime_checkable
class Hook(Protocol):
    every: int
    name: str
    metrics: bool  # whether a call returns metrics to log

    def __call__(self, step: int, generator: nn.Module) -> dict[str, float] | None: ...


@runtime_checkable
class Stateful(Protocol):
    """A hook whose state the resumable training state keeps, under its ``name``."""

    name: str

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


@dataclass(frozen=True)
class Every:
    """A stateless hook: ``fn(step, generator)`` every ``every`` steps."""

    every: int
    fn: Callable[[int, nn.Module], dict[str, float] | None]
    name: str = "hook"
    metrics: bool = False

    def __call__(self, step: int, generator: nn.Module) -> dict[str, float] | None:
        return self.fn(step, generator)


def due(hook: Hook, step: int, steps: int) -> bool:
    """Whether ``hook`` runs at ``step`` of a run of ``steps``."""
    return step % hook.every == 0 or step == steps


class EvolutionSnapshots:
    """A hook writing the grid of one fixed latent batch to ``folder/step_NNNNNN.png``.

    It keeps the PNG bytes it wrote: they are its state in the resumable training state, so
    a resumed run puts the snapshots from before the interruption back (DVC clears the
    folder before it re-runs training) and its GIF is the uninterrupted run's.
    """

    name = "evolution"
    metrics = False

    def __init__(self, every: int, folder: Path, seed: int, model_cfg: ModelConfig,
                 num_classes: int):
        self.every = every
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.z = fixed_latent(EVOLUTION_N, model_cfg.latent_dim, seed, model_cfg.noise)
        self.labels = grid_labels(EVOLUTION_N, num_classes, model_cfg.conditional)
        self.files: dict[str, bytes] = {}
        self.first = True

    def _remove_stale(self, keep: Callable[[Path], bool]) -> None:
        for stale in self.folder.glob("step_*.png"):
            if not keep(stale):
                stale.unlink()

    def __call__(self, step: int, generator: nn.Module) -> None:
        if self.first:
            # Snapshots from this step on belong to another run; earlier ones are kept.
            self._remove_stale(lambda p: p.stem[5:].isdigit() and int(p.stem[5:]) < step)
            self.first = False
        buffer = io.BytesIO()
        to_grid_image(generate(generator, self.z, self.labels)).save(buffer, format="PNG")
        name = f"step_{step:06d}.png"
        self.files[name] = buffer.getvalue()
        write_atomic(self.folder / name, lambda handle: handle.write(self.files[name]))

    def state_dict(self) -> dict[str, bytes]:
        return dict(self.files)

    def load_state_dict(self, files: dict[str, bytes]) -> None:
        """Make the folder hold exactly the snapshots ``files`` ({file name: PNG bytes}).

        The names come from a file: only names this hook writes are taken, so a state that
        names ``../x.png`` cannot write outside the folder.
        """
        bad = [name for name, blob in files.items()
               if not (isinstance(name, str) and SNAPSHOT_NAME.fullmatch(name))
               or not isinstance(blob, bytes)]
        if bad:
            raise GanError(f"{self.folder}: the saved state names a snapshot {bad[0]!r}; "
                           f"only step_NNNNNN.png files inside the folder are written")
        self._remove_stale(lambda p: p.name in files)
        for name, blob in files.items():
            write_atomic(self.folder / name, lambda handle, blob=blob: handle.write(blob))
        self.files = dict(files)
        self.first = False
