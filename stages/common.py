"""What every stage script shares: argument parsing, params loading, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gan import memory
from gan.errors import GanError, Interrupted

DEBUG_ENV = "GAN_DEBUG"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="the params file (default: params.yaml)")
    return p


def run(main: Callable[[], None]) -> None:
    """Call ``main``; a GanError becomes one line on stderr and exit code 2.

    Set GAN_DEBUG=1 to see the full traceback instead.
    """
    memory.keep_freed_memory()  # fewer page faults per step; the numbers are unchanged
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
