"""``gan-queue retry``: each failed or dead experiment queued again as itself, under DVC's
lock of the stash, then the queue started and, if asked, watched (gan.queue, "Retry")."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack

from gan import dvc_internals as dvc
from gan.errors import GanError
from gan.queue.params import differs, read_params
from gan.queue.read import FINAL, Entry, classify, snapshot
from gan.queue.workers import processes, start_workers, stop_leftovers, workers

LOCK_WAIT = 10.0  # seconds to wait for another DVC process to let go of the stash
NO_WORKER_GRACE = 60.0  # --wait: seconds with queued work and no live worker before giving up


def _still_to_retry(queue, item: Entry) -> bool:
    """Whether ``item`` is still the failed or running task it was (not queued again by
    another gan-queue retry meanwhile)."""
    now = next((e for e in snapshot(queue) if e.rev == item.rev), None)
    return now is not None and now.state in ("failed", "running") and now.task_id == item.task_id


def _hold_stash(queue, held: ExitStack, item: Entry) -> None:
    """Take DVC's lock of the queue's stash refs into ``held``, waiting up to LOCK_WAIT
    seconds for another DVC process to let go of it (a worker taking a task holds it for
    a moment), or one GanError with DVC's whole message."""
    deadline = time.monotonic() + LOCK_WAIT
    while (busy := dvc.lock_stash(queue, held)) is not None:
        if time.monotonic() >= deadline:
            raise GanError(f"{item.name}: left as it was ({item.state}): {busy}")
        time.sleep(0.5)


def requeue(queue, item: Entry, table) -> bool:
    """Put a failed or dead experiment's own stash commit back in DVC's queue, once; False
    when another retry did meanwhile. Everything happens under DVC's lock of the queue's
    stash refs, taken first: a busy stash (a ``dvc exp run --queue`` elsewhere) changes
    nothing, and of two retries at once the second finds the experiment queued."""
    if not dvc.has_commit(queue, item.rev):
        raise GanError(f"{item.name}: its stash commit {item.rev[:7]} is gone from "
                       "git; queue it again with dvc exp run --queue")
    with ExitStack() as held:
        _hold_stash(queue, held, item)
        if not _still_to_retry(queue, item):
            return False
        _replace(queue, item, table)
    return True


def _replace(queue, item: Entry, table) -> None:
    """Remove what is left of the old attempt and queue the experiment's commit again."""
    root = dvc.temp_folder(queue, item.rev) if item.state == "dead" else None
    if item.state == "dead":  # what `dvc queue kill` does to a task whose process is gone
        stop_leftovers(queue, item.rev, table)
        dvc.mark_failed(queue, item.task_id)
    dvc.remove(queue, item.rev)  # as `dvc queue remove`; the old attempt's log stays
    users = sorted(pid for pid, (_, _, cwd) in processes().items()
                   if root and (cwd == root or cwd.startswith(root + os.sep)))
    if users:
        print(f"gan-queue: left {root} in place: process {users[0]} works in it", flush=True)
    elif root and os.path.isdir(root):
        dvc.remove_folder(root)
    dvc.queue_again(queue, item.entry, item.kwargs)


def wait(queue, revs: dict[str, str], timeout: float | None, poll: float = 2.0) -> dict:
    """Watch the queue until nothing is queued or running; print each of ``revs`` ({stash
    rev: name}) as it ends; return {stash rev: final state}."""
    ended: dict[str, str] = {}
    start = last_worker = time.monotonic()
    while True:
        entries = classify(queue)
        by_rev = {item.rev: item for item in entries}
        for rev, name in revs.items():
            item = by_rev.get(rev)
            state = item.state if item else "removed"
            if rev not in ended and state in (*FINAL, "removed"):
                ended[rev] = state
                why = f" ({item.why})" if item and item.why else ""
                print(f"{name}: {state}{why}", flush=True)
        busy = [item.name for item in entries if item.state in ("queued", "running")]
        if not busy:
            return ended
        now = time.monotonic()
        if workers(queue, processes()):
            last_worker = now
        elif now - last_worker > NO_WORKER_GRACE:
            raise GanError(f"no queue worker has run for {NO_WORKER_GRACE:.0f} s while "
                           f"{', '.join(busy)} wait; start one: dvc queue start")
        if timeout is not None and now - start > timeout:
            raise GanError(f"--timeout: {', '.join(busy)} still queued or running after "
                           f"{timeout:g} s")
        time.sleep(poll)


def retry_command(repo, args: argparse.Namespace) -> int:
    """Re-queue every failed or dead experiment, start the queue, wait if asked."""
    if args.jobs < 1:
        raise GanError(f"--jobs: got {args.jobs}, must be at least 1")
    queue = dvc.experiment_queue(repo)
    entries = classify(queue)
    targets = [item for item in entries if item.state in ("failed", "dead")]
    if not targets:
        print("gan-queue: nothing to retry: no failed or dead experiment in the queue")
        return 0
    files = dvc.params_paths(repo)
    workspace = read_params(repo, None, files)
    table = processes()
    for item in targets:
        params = differs(repo, item.rev, workspace, files) or "the workspace's params"
        if not requeue(queue, item, table):
            print(f"{item.name}: already queued again (by another gan-queue retry?); left as "
                  "it is", flush=True)
            continue
        why = f" ({item.why})" if item.why else ""
        print(f"{item.name}: was {item.state}{why}; queued again: {params}", flush=True)
    if not args.no_start:
        started = start_workers(queue, args.jobs)
        print(f"gan-queue: queue started: {started} new worker(s), up to {args.jobs} in all",
              flush=True)
    if not args.wait:
        return 0
    names = {item.rev: item.name for item in targets}
    ended = wait(queue, names, args.timeout)
    bad = sorted(names[rev] for rev, state in ended.items() if state != "success")
    if bad:
        print(f"error: {len(bad)} of {len(targets)} retried experiments did not succeed: "
              f"{', '.join(bad)} (dvc queue logs NAME)", file=sys.stderr)
        return 1
    return 0
