"""Files the project writes: one atomic writer, and torch files with a format version on top.

Every output goes through ``write_atomic``, so a failure or a kill never leaves a
half-written file where a good one (or none) was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from gan.errors import GanError


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it, then rename it.

    On any error the temporary file is removed and ``path`` is left as it was. Files are
    made readable by everyone (mkstemp's default is private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(data: dict, path: Path) -> None:
    """Indented JSON with sorted keys and a final newline, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    write_atomic(path, lambda handle: torch.save(checkpoint, handle))


def read_checkpoint(path: Path, fmt: int, kind: str = "checkpoint", missing: str = "",
                    weights_only: bool = True) -> dict[str, Any]:
    """A file ``save_checkpoint`` wrote whose "format" is ``fmt``, with one GanError naming
    the file otherwise.

    ``missing`` is appended to the not-found message (what to run); ``weights_only=False``
    is for this project's own resume states, which hold Python and NumPy RNG states.
    """
    path = Path(path)
    if not path.is_file():
        raise GanError(f"{path}: {kind} not found{missing}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:
        raise GanError(f"{path}: not a readable {kind} ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise GanError(f"{path}: not a {kind} of this project (format {fmt} expected)")
    return ckpt
