"""What every stage script shares: its start, argument parsing, one-line errors.

``start`` is the first call of every stage's ``main`` (see stages/__init__.py for why the
stage modules import torch only after it).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gan import memory, numerics
from gan.errors import GanError, Interrupted, guard_streams, one_line_warnings
from gan.sections import read_params

DEBUG_ENV = "GAN_DEBUG"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="the params file (default: params.yaml)")
    p.add_argument("--machine", type=Path, help="folder for a record of where the stage "
                   "computed: CPU, kernels, threads, numerics mode (gan/numerics.py)")
    return p


def own_process(stage: str) -> bool:
    """Whether this process is the stage's own: ``python -m stages.<stage>`` (under
    torchrun too), not a test or notebook that calls its ``main``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == f"stages.{stage}"


def start(stage: str, cli: argparse.ArgumentParser, computes: bool = True
          ) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The first call of every stage's ``main``: its command line parsed and its params
    file read, once, and handed back; in the stage's own process, its numerics pinned first.

    Pinning (gan/numerics.py): the params' numerics section sets the thread and kernel
    variables of the environment, before torch loads, whatever the user's shell exports;
    then, for a stage whose outputs torch ``computes`` (all but download and plot), torch's
    own switches, and the battery checked against the committed digests and recorded in
    ``--machine``'s folder (a warning when this machine computes other bits, said once per
    ``dvc repro``). Called in another process (a test calling ``main``), it pins nothing:
    torch loaded there long before, and the pins would change that process's arithmetic
    for whatever it runs next.
    """
    parsed = cli.parse_args()
    params = read_params(parsed.params)
    cfg = numerics.config(params)
    if own_process(stage):
        numerics.pin_environment(cfg.portable, cfg.threads)
        if computes:
            numerics.apply_torch(cfg.portable, cfg.threads)
            run = launcher()  # the stages of one dvc repro share it: the warning is said once
            numerics.self_check(stage, cfg.portable, cfg.threads, parsed.machine,
                                list(run) if run else None)
    return parsed, params


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent id, start time in clock ticks) of a running process, from /proc; None once
    it has exited, zombies included (an exited dvc stays one until its parent reaps it)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _is_dvc(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # `dvc ...`, `python .../bin/dvc ...` or `python -m dvc ...`
    return any(Path(arg.decode(errors="replace")).name == "dvc" for arg in argv[:3])


def launcher() -> tuple[int, int] | None:
    """(pid, start time) of the process this stage lives for: the nearest `dvc` among its
    ancestors (with a shell or torchrun between them), else its parent. None off Linux."""
    own = _stat(os.getpid())
    if own is None:
        return None
    pid = own[0]
    while pid > 1:
        stat = _stat(pid)
        if stat is None:
            break
        if _is_dvc(pid):
            return pid, stat[1]
        pid = stat[0]
    parent = _stat(own[0])
    return None if parent is None or own[0] <= 1 else (own[0], parent[1])


def stop_when_orphaned(every: float = 1.0) -> threading.Thread | None:
    """SIGTERM this process once the process it lives for is gone.

    DVC exits at once on SIGTERM (a CI cancel, `timeout`, `kill`) without signalling its
    stage, which would train on as an orphan beside the next run on the same state. The
    signal goes through the stage's own handling: train saves its state at the end of the
    step and stops (exit 130), the other stages stop where they are; their writes are atomic.
    """
    watched = launcher()
    if watched is None:
        return None
    pid, started = watched

    def watch() -> None:
        while True:
            stat = _stat(pid)
            if stat is None or stat[1] != started:  # gone, or its id taken by another
                os.kill(os.getpid(), signal.SIGTERM)
                return
            threading.Event().wait(every)

    thread = threading.Thread(target=watch, name="stop-when-orphaned", daemon=True)
    thread.start()
    return thread


def run(main: Callable[[], None]) -> None:
    """Call ``main``; a GanError becomes one line on stderr and exit code 2.

    Set GAN_DEBUG=1 to see the full traceback instead. A closed stdout or stderr
    (``dvc repro 2>&1 | head``) does not stop the stage: what it would print is dropped.
    """
    guard_streams()
    memory.keep_freed_memory()  # fewer page faults per step; the numbers are unchanged
    one_line_warnings()
    stop_when_orphaned()
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
