"""What every stage script shares: argument parsing, params loading, one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gan.config import GanError, read_params

DEBUG_ENV = "GAN_DEBUG"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="the params file (default: params.yaml)")
    return p


def params(path: Path) -> dict[str, Any]:
    return read_params(path)


def write_json(data: dict, path: Path) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def run(main: Callable[[], None]) -> None:
    """Call ``main``; a GanError becomes one line on stderr and exit code 2.

    Set GAN_DEBUG=1 to see the full traceback instead.
    """
    from gan.train import Interrupted

    try:
        main()
    except Interrupted as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(130)  # the shell's code for a Ctrl-C
    except GanError as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
