"""The resume store: resumable training states kept outside the workspace, by fingerprint.

The train stage saves its state to ``.resume/train.pt`` in the workspace, which dies with a
temporary workspace: ``dvc exp run --queue`` runs each experiment in one under
``.dvc/tmp/exps/``, and a killed worker's is removed. So the stage also saves the state here,
in a folder outside every workspace, under a name made of the run's fingerprint (gan.train:
params, data, code, device, torch). Whichever workspace runs the same run next (the
experiment queued again, or ``dvc exp run`` of the same params in the main workspace) finds
the state by that name and continues bit for bit. A state whose run finished is deleted;
the store keeps at most ``resume.store_keep`` states, dropping the least recently written
first. ``gan-queue store`` lists it, ``gan-queue store --clean`` empties it.

``resume.store``: ``auto`` is ``$GAN_RESUME_STORE`` when set, else
``$XDG_CACHE_HOME/gan-pipeline/resume`` (``~/.cache/...`` without XDG_CACHE_HOME); ``off``
keeps states in the workspace only; anything else is the folder itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

SUFFIX = ".pt"


def folder(setting: str) -> Path | None:
    """The store's folder for a ``resume.store`` value, or None when it is ``off``."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting).expanduser()
    if os.environ.get("GAN_RESUME_STORE"):
        return Path(os.environ["GAN_RESUME_STORE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "gan-pipeline" / "resume"


def key(fingerprint: dict[str, Any]) -> str:
    """The store's name for a run: a digest of its whole fingerprint."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:32]


def state_path(store: Path, fingerprint: dict[str, Any]) -> Path:
    return Path(store) / f"{key(fingerprint)}{SUFFIX}"


def states(store: Path) -> list[Path]:
    """The store's states, the most recently written first."""
    store = Path(store)
    if not store.is_dir():
        return []
    found = [p for p in store.iterdir() if p.suffix == SUFFIX and p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


def _in_use(path: Path) -> bool:
    """Whether a train stage holds the lock of the state at ``path`` (gan.io.exclusive)."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def remove(path: Path) -> bool:
    """Delete a state and its lock file unless a train stage is using it; whether it went."""
    if _in_use(path):
        return False
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".lock").unlink(missing_ok=True)
    return True


def prune(store: Path, keep: int, current: Path | None = None) -> list[Path]:
    """Delete all but the ``keep`` most recently written states (never ``current`` or one in
    use); returns what went."""
    gone = []
    for path in states(store)[keep:]:
        if path != current and remove(path):
            gone.append(path)
    return gone


def describe(store: Path) -> list[str]:
    """One line per stored state: its name, step, size and age, the newest first."""
    from gan.checkpoint import FORMAT  # torch only for this listing
    from gan.errors import GanError
    from gan.io import read_checkpoint

    lines = []
    now = time.time()
    for path in states(store):
        try:
            step = read_checkpoint(path, FORMAT, "resume state")["step"]
        except (GanError, KeyError, TypeError):
            step = "?"
        stat = path.stat()
        hours = (now - stat.st_mtime) / 3600
        used = ", in use" if _in_use(path) else ""
        lines.append(f"{path.name}  step {step}  {stat.st_size / 2**20:.1f} MB  "
                     f"{hours:.1f} h old{used}")
    return lines


def clean(store: Path) -> tuple[int, int]:
    """Delete every state no running stage holds: (deleted, left in use)."""
    found = states(store)
    gone = sum(remove(path) for path in found)
    return gone, len(found) - gone
