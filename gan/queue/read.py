"""The queue's experiments in DVC's own states, and which running ones are dead: no live
worker of this repository will ever finish them (gan.queue, "Dead")."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gan import dvc_internals as dvc
from gan.queue.workers import exec_runs, processes, workers

STATES = ("queued", "running", "success", "failed", "dead")
FINAL = ("success", "failed", "dead")
INSPECT_TIMEOUT = 5.0  # seconds a live worker has to answer DVC's celery inspect


@dataclass
class Entry:
    """One experiment of the queue as DVC records it, with the state this module gives it."""

    entry: object  # DVC's own entry, handed back to gan.dvc_internals only
    rev: str  # its stash commit
    state: str
    task_id: str | None = None
    name: str = ""
    kwargs: dict = field(default_factory=dict)  # the task's copy_paths and message
    why: str = ""


def snapshot(queue) -> list[Entry]:
    """Every experiment of the queue in DVC's own states: queued (a message not taken yet),
    running (taken, no result), success (a result with an experiment ref) or failed (a
    result without one), the rule of DVC's ``iter_done``, read in one pass."""
    out = [Entry(entry, rev, "queued", name=name or rev[:7])
           for entry, rev, name in dvc.queued(queue)]
    for task in dvc.taken(queue):
        item = Entry(task.entry, task.rev, "running", task.task_id, task.name or task.rev[:7],
                     task.extra)
        if task.ended:
            done, made = dvc.outcome(queue, task.rev)
            item.state = "success" if done else "failed"
            if done and not task.name:
                item.name = made
        out.append(item)
    return out


def ask_workers(queue, nodes: set[str]) -> tuple[set[str], set[str]]:
    """(task ids the workers ``nodes`` hold, the nodes that answered both questions): DVC's
    celery inspect of active tasks, as ``dvc queue status`` and ``dvc queue kill`` ask it,
    and of reserved ones (taken from the broker, not started yet)."""
    held, answered = set(), set()
    for _ in range(2):  # a busy machine may miss one timeout; never more than two asks
        replies = dvc.ask(queue, sorted(nodes - answered), INSPECT_TIMEOUT)
        for reply in replies:
            for tasks in reply.values():
                held.update(task.get("id") for task in tasks or [])
        answered |= set(replies[0]) & set(replies[1])
        if answered >= nodes:
            break
    return held, answered


def judge(queue, running: list[Entry], table) -> dict[str, str]:
    """{stash rev: why} of the running experiments that no live worker will finish.

    Workers are counted as processes, not names: `dvc queue start` names a new worker by its
    number and skips the numbers of the workers that answer its ping, so a busy worker that
    misses the ping gets a namesake. Both answer celery's inspect under the one name, so
    their answers cannot be told apart, and a task one of them may hold is left running."""
    return _judge(queue, running, table)[0]


def _judge(queue, running: list[Entry], table) -> tuple[dict[str, str], bool]:
    """``judge``'s verdict, and whether a free worker left it open by not answering."""
    live = workers(queue, table)
    execs = exec_runs(queue, table)
    dead, busy, undecided = {}, set(), []
    for item in running:
        pid = execs.get(item.rev)
        if pid is None:
            undecided.append(item)
        elif table[pid][0] in live:
            busy.add(table[pid][0])
        else:
            dead[item.rev] = "its worker is gone; its exec-run runs on, orphaned"
    free = {live[pid] for pid in live if pid not in busy}
    if not undecided:
        return dead, False
    if not free:
        dead.update((item.rev, "no live queue worker holds it") for item in undecided)
        return dead, False
    if len(live) != len(set(live.values())):  # two workers share a name
        return dead, False
    held, answered = ask_workers(queue, free)
    if answered >= free:
        dead.update((item.rev, "no live queue worker holds it")
                    for item in undecided if item.task_id not in held)
        return dead, False
    return dead, True


# Process tables read when a free worker stays silent: an idle DVC worker shuts itself down,
# and while it does it is still listed but answers no more; the next read finds it gone.
SILENT_READS = 3
SILENT_PAUSE = 1.0  # seconds between them


def settle(queue, running: list[Entry]) -> dict[str, str]:
    """``judge`` on a fresh process table, read again while a free worker stays silent;
    what stays open after the last read is left running."""
    for attempt in range(SILENT_READS):
        dead, silent = _judge(queue, running, processes())
        if not silent:
            break
        if attempt + 1 < SILENT_READS:
            time.sleep(SILENT_PAUSE)
    return dead


def classify(queue) -> list[Entry]:
    """The queue's experiments, the running ones that no live worker will finish as dead.

    The queue is read before the processes and the workers' answers, and again after them:
    a task counts as dead only if it runs in both reads. A worker stores a task's result
    before it lets go of the task, so one that ends meanwhile reads as ended the second
    time, and one that starts meanwhile did not run the first time."""
    running = [item for item in snapshot(queue) if item.state == "running"]
    dead = settle(queue, running) if running else {}
    task_of = {item.rev: item.task_id for item in running}
    entries = snapshot(queue)
    for item in entries:
        if item.state == "running" and item.rev in dead and task_of[item.rev] == item.task_id:
            item.state, item.why = "dead", dead[item.rev]
    return entries
