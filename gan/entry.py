"""The console scripts' entry points (pyproject.toml's [project.scripts]).

This module imports nothing heavy, so Ctrl-C is caught from the first moment: while torch,
DVC or the command's own module is still importing, it is one line and exit code 130, as it
is once the command runs.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from gan.errors import GanError


def _run(prog: str, module: str, function: str) -> int:
    """Import ``module`` and return what its ``function`` returns; Ctrl-C at any moment is
    ``<prog>: interrupted`` on stderr and 130 (the shell's code for it)."""
    def leave(signum, frame) -> None:
        # Ctrl-C inside an extension's own import does not come out as KeyboardInterrupt
        # (NumPy turns it into an ImportError that names datetime), so while the modules
        # load, the handler leaves at once: nothing has been written yet.
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        os._exit(130)

    signal.signal(signal.SIGINT, leave)
    try:
        pinned = _pin_numerics(prog) if prog in COMPUTING else None
        command = getattr(importlib.import_module(module), function)
        if pinned is not None:
            from gan import numerics

            numerics.apply_torch(*pinned)
    except GanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if signal.getsignal(signal.SIGINT) is leave:  # unless an import set its own
            signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return command()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback either
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


# The scripts that compute with torch: like the stages, they pin the numerics of their
# params file (``--params``, default params.yaml, when it exists) before torch loads, so
# gan-score's numbers are the evaluate stage's, bit for bit, on any CPU (docs/resume.md,
# "Portable numerics").
COMPUTING = ("gan-sample", "gan-score")


def _pin_numerics(prog: str) -> tuple[bool, int] | None:
    """Pin the numerics section of this command's ``--params`` file in the environment;
    (portable, threads) for torch's own switches once it has loaded, None when there is no
    such file (torch's own choice, as in any Python program)."""
    import argparse
    from pathlib import Path

    from gan import numerics

    pre = argparse.ArgumentParser(prog=prog, add_help=False)
    pre.add_argument("--params", type=Path, default=Path("params.yaml"))
    path = pre.parse_known_args(sys.argv[1:])[0].params
    if not path.is_file():
        return None
    portable, threads = numerics.settings(path)
    numerics.pin_environment(portable, threads)
    return portable, threads


def sample() -> int:
    """``gan-sample``."""
    return _run("gan-sample", "gan.cli", "main")


def score() -> int:
    """``gan-score``."""
    return _run("gan-score", "gan.cli", "score_main")


def queue() -> int:
    """``gan-queue``."""
    return _run("gan-queue", "gan.queue", "main")


def compare() -> int:
    """``gan-compare``."""
    return _run("gan-compare", "gan.compare", "main")
