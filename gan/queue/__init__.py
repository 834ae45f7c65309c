"""``gan-queue``: re-run what failed or died in DVC's experiment queue, and show its state.

    gan-queue status                                  one line per experiment of the queue
    gan-queue retry [-j N] [--no-start] [--wait] [--timeout S]
    gan-queue store [--clean] [--params params.yaml]  the resume store's states (gan.store)

DVC queues experiments (``dvc exp run --queue``) but has no retry: a failed experiment stays
Failed, and one whose worker was killed stays Running forever. This is a thin layer over
DVC's own queue, not a queue of its own: every state it reads is what DVC records, and every
change it makes is one DVC makes itself.

- **Where DVC keeps the queue.** Each experiment is a git stash commit (the workspace with
  its ``-S`` params, under ``refs/exps/celery/stash``) plus a celery message in
  ``.dvc/tmp/exps/celery``. A worker (``dvc exp queue-worker``, one task at a time) takes
  the message, copies the commit into a temporary folder and runs ``dvc exp exec-run`` there,
  recording that process in ``.dvc/tmp/exps/run/<rev>/<rev>.json`` (pid, return code), then
  collects the result. Queued, running (taken, no result yet), success and failed are DVC's
  own states, read the way ``dvc queue status`` reads them.
- **Dead.** A running experiment no live worker of this repository will ever finish: its
  ``exec-run`` is alive but its parent is no worker (orphaned), or no ``exec-run`` is alive
  and no live worker holds the task (none is left, or each one that could answers DVC's own
  ``celery inspect`` without it). Workers are told apart from other repositories' by their
  celery node name, which DVC derives from this repository's queue folder. A worker that
  does not answer is looked for again in a fresh read of the processes (an idle worker that
  shuts itself down is listed but silent until it is gone). One that stays, or two live
  workers of one name (DVC starts a namesake when a busy one misses its ping), leave their
  tasks running: a task is never called dead on a guess. The queue is read before the
  processes and the answers and again after them, and only a task running in both reads
  counts: a worker stores a task's result before it lets go of it, so one that ends
  meanwhile reads as ended, and one that starts meanwhile was not running.
- **Retry.** Each failed or dead experiment is re-queued as itself: its stash commit (same
  baseline, code and params, same name) goes back on DVC's stash ref and a new celery task
  for it is sent, as ``dvc exp run --queue`` does. All of it happens under DVC's own lock of
  the stash refs, taken before anything changes: a busy stash leaves the experiment as it
  was (one line with DVC's whole message), and of two retries at once the second finds it
  queued already. Before that, what is left of the old attempt goes: a dead task is marked
  failed (what ``dvc queue kill`` does to a task whose process is gone), the ``exec-run``
  DVC recorded for it (pid and start time) is stopped with the processes it started, and
  nothing else, and the entry is removed as ``dvc queue remove`` removes it, so it is
  listed once. Its temporary folder goes unless a process still works in it. The log of the old
  attempt stays; the new one appends to it (``dvc queue logs``). Then the queue is started
  (``dvc queue start -j N``) and, with ``--wait``, watched until nothing is queued or
  running, one line per retried experiment as it ends.

The modules, one concern each: ``read`` (the queue's states, dead included), ``workers``
(the process table, DVC's workers and exec-runs), ``params`` (what an experiment sets
otherwise than the workspace), ``retry`` (re-queue, start, wait), ``store`` (the resume
store's listing) and ``cli`` (the commands). Every call into DVC goes through
``gan.dvc_internals``.
"""

from __future__ import annotations

from gan.queue.cli import main

__all__ = ["main"]
