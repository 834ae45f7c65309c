"""The processes behind DVC's queue: the live process table, this repository's queue
workers and ``exec-run`` processes, stopping what a dead experiment left running, and
starting workers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gan import dvc_internals as dvc


def processes() -> dict[int, tuple[int, list[str], str]]:
    """{pid: (parent pid, argv, cwd)} of every live process (zombies left out)."""
    import psutil

    table = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            continue
        table[info["pid"]] = (info["ppid"], info["cmdline"] or [], info["cwd"] or "")
    return table


def workers(queue, table) -> dict[int, str]:
    """{pid: node name} of this repository's live ``dvc exp queue-worker`` processes."""
    prefix = dvc.node_prefix(queue)
    found = {}
    for pid, (_, argv, _) in table.items():
        if "queue-worker" in argv:
            after = argv[argv.index("queue-worker") + 1:]
            if after and after[0].startswith(prefix):
                found[pid] = after[0]
    return found


def exec_runs(queue, table) -> dict[str, int]:
    """{stash rev: pid} of the live ``dvc exp exec-run`` processes of this queue, known by
    the infofile DVC passes them (``<run dir>/<rev>/<rev>.run``)."""
    run_dir = os.path.realpath(dvc.run_dir(queue))
    found = {}
    for pid, (_, argv, _) in table.items():
        if "exec-run" in argv and "--infofile" in argv[:-1]:
            infofile = os.path.realpath(argv[argv.index("--infofile") + 1])
            if os.path.dirname(os.path.dirname(infofile)) == run_dir:
                found[Path(infofile).stem] = pid
    return found


def recorded_exec_run(queue, rev: str, table) -> int | None:
    """The pid of the ``exec-run`` DVC recorded for ``rev`` if that very process still runs:
    the pid in ``<rev>.json`` (written once the process started), whose argv names the rev's
    infofile and which started before the record was written (a reused pid starts later)."""
    import psutil

    record = dvc.record(queue, rev, ".json")
    try:
        pid = int(json.loads(record.read_text())["pid"])
        written = record.stat().st_mtime
        started = psutil.Process(pid).create_time()
    except (OSError, ValueError, TypeError, KeyError, psutil.Error):
        return None
    if pid not in table or exec_runs(queue, {pid: table[pid]}).get(rev) != pid:
        return None
    return pid if started <= written + 1.0 else None  # create_time is read from clock ticks


def stop_leftovers(queue, rev: str, table) -> None:
    """Stop what still runs of a dead experiment: the exec-run DVC recorded for it (see
    ``recorded_exec_run``) and the processes it started; nothing else, whatever folder it
    works in (a user's shell in the temporary workspace is the user's)."""
    import psutil

    pid = recorded_exec_run(queue, rev, table)
    procs = []
    if pid is not None:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            procs = []
    for proc in procs:
        try:
            proc.terminate()  # psutil checks the start time: a reused pid is not signalled
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def start_workers(queue, jobs: int) -> int:
    """``dvc queue start -j jobs``. The workers run ``dvc`` and the stages ``python`` from
    PATH: this Python's bin/ goes first, as ``. .venv/bin/activate`` puts it. DVC forks a
    daemon per worker that keeps the standard streams it was given, so a pipe reading
    ``dvc queue start`` (``| tee``, ``$(...)``) waits until the workers exit; here the
    daemons get /dev/null instead."""
    bin_dir = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(bin_dir, "dvc")):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", os.defpath)])
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        return dvc.start_workers(queue, jobs)
    finally:
        for fd, copy in enumerate(saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)
