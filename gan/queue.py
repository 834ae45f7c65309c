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
  does not answer, or two live workers of one name (DVC starts a namesake when a busy one
  misses its ping), leave their tasks running: a task is never called dead on a guess. The
  queue is read before the processes and the answers and again after them, and only a task
  running in both reads counts: a worker stores a task's result before it lets go of it, so
  one that ends meanwhile reads as ended, and one that starts meanwhile was not running.
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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from gan.errors import GanError

STATES = ("queued", "running", "success", "failed", "dead")
FINAL = ("success", "failed", "dead")
INSPECT_TIMEOUT = 5.0  # seconds a live worker has to answer DVC's celery inspect
LOCK_WAIT = 10.0  # retry: seconds to wait for another DVC process to let go of the stash
NO_WORKER_GRACE = 60.0  # --wait: seconds with queued work and no live worker before giving up
_UNSET = object()


@dataclass
class Entry:
    """One experiment of the queue as DVC records it, with the state this module gives it."""

    entry: object  # DVC's QueueEntry
    state: str
    task_id: str | None = None
    name: str = ""
    kwargs: dict = field(default_factory=dict)  # the task's copy_paths and message
    why: str = ""

    @property
    def rev(self) -> str:
        return self.entry.stash_rev


def _quiet_logging() -> None:
    """DVC, celery and kombu log warnings of their own; the commands print one line each."""
    if os.environ.get("GAN_DEBUG") == "1":
        logging.basicConfig(level=logging.DEBUG)
        return
    logging.getLogger().addHandler(logging.NullHandler())
    for name in ("dvc", "dvc_task", "celery", "kombu", "root"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)


def open_repo(path: str = os.curdir):
    """DVC's Repo for ``path`` (or a folder above it), with git: the queue needs both."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc.scm import Git

    try:
        repo = Repo(path)
    except NotDvcRepoError:
        raise GanError(f"{os.path.abspath(path)}: not a DVC repository (no .dvc folder "
                       "here or above); run gan-queue in the project") from None
    if not isinstance(repo.scm, Git):
        repo.close()
        raise GanError(f"{repo.root_dir}: not a git repository; DVC's queue keeps "
                       "experiments as git commits")
    return repo


def snapshot(queue) -> list[Entry]:
    """Every experiment of the queue in DVC's own states: queued (a message not taken yet),
    running (taken, no result), success (a result with an experiment ref) or failed (a
    result without one), the rule of DVC's ``iter_done``, read in one pass."""
    out = [Entry(e, "queued", name=e.name or e.stash_rev[:7]) for e in queue.iter_queued()]
    for msg, entry in queue._iter_processed():
        args, kwargs, _ = msg.decode()
        task_id = msg.headers["id"]
        extra = {k: kwargs[k] for k in ("copy_paths", "message") if kwargs.get(k)}
        item = Entry(entry, "running", task_id, entry.name or entry.stash_rev[:7], extra)
        if queue.celery.AsyncResult(task_id).ready():
            try:
                result = queue._load_info(entry.stash_rev).result
            except (OSError, ValueError, TypeError, KeyError):
                result = None
            done = result is not None and result.exp_hash and result.ref_info
            item.state = "success" if done else "failed"
            if done and not entry.name:
                item.name = result.ref_info.name
        out.append(item)
    return out


def _processes() -> dict[int, tuple[int, list[str], str]]:
    """{pid: (parent pid, argv, cwd)} of every live process (zombies left out)."""
    import psutil

    table = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            continue
        table[info["pid"]] = (info["ppid"], info["cmdline"] or [], info["cwd"] or "")
    return table


def node_prefix(queue) -> str:
    """The start of this repository's worker node names: DVC's ``_spawn_worker`` names them
    ``dvc-exp-<first 6 hex of sha256(queue folder)>-<n>@localhost``."""
    return f"dvc-exp-{hashlib.sha256(queue.wdir.encode('utf-8')).hexdigest()[:6]}-"


def workers(queue, table) -> dict[int, str]:
    """{pid: node name} of this repository's live ``dvc exp queue-worker`` processes."""
    prefix = node_prefix(queue)
    found = {}
    for pid, (_, argv, _) in table.items():
        if "queue-worker" in argv:
            after = argv[argv.index("queue-worker") + 1:]
            if after and after[0].startswith(prefix):
                found[pid] = after[0]
    return found


def exec_runs(queue, table) -> dict[str, int]:
    """{stash rev: pid} of the live ``dvc exp exec-run`` processes of this queue, known by
    the infofile DVC passes them (``.dvc/tmp/exps/run/<rev>/<rev>.run``)."""
    run_dir = os.path.realpath(queue.pid_dir)
    found = {}
    for pid, (_, argv, _) in table.items():
        if "exec-run" in argv and "--infofile" in argv[:-1]:
            infofile = os.path.realpath(argv[argv.index("--infofile") + 1])
            if os.path.dirname(os.path.dirname(infofile)) == run_dir:
                found[Path(infofile).stem] = pid
    return found


def _ask_workers(queue, nodes: set[str]) -> tuple[set[str], set[str]]:
    """(task ids the workers ``nodes`` hold, the nodes that answered both questions): DVC's
    celery inspect of active tasks, as ``dvc queue status`` and ``dvc queue kill`` ask it,
    and of reserved ones (taken from the broker, not started yet)."""
    held, answered = set(), set()
    for _ in range(2):  # a busy machine may miss one timeout; never more than two asks
        left = sorted(nodes - answered)
        inspect = queue.celery.control.inspect(destination=left, timeout=INSPECT_TIMEOUT,
                                               limit=len(left))
        replies = [inspect.active() or {}, inspect.reserved() or {}]
        for reply in replies:
            for tasks in reply.values():
                held.update(task.get("id") for task in tasks or [])
        answered |= set(replies[0]) & set(replies[1])
        if answered >= nodes:
            break
    return held, answered


def _judge(queue, running: list[Entry], table) -> dict[str, str]:
    """{stash rev: why} of the running experiments that no live worker will finish.

    Workers are counted as processes, not names: `dvc queue start` names a new worker by its
    number and skips the numbers of the workers that answer its ping, so a busy worker that
    misses the ping gets a namesake. Both answer celery's inspect under the one name, so
    their answers cannot be told apart, and a task one of them may hold is left running."""
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
        return dead
    if not free:
        dead.update((item.rev, "no live queue worker holds it") for item in undecided)
    elif len(live) == len(set(live.values())):  # no two workers share a name
        held, answered = _ask_workers(queue, free)
        if answered >= free:
            dead.update((item.rev, "no live queue worker holds it")
                        for item in undecided if item.task_id not in held)
    return dead


def classify(queue) -> list[Entry]:
    """The queue's experiments, the running ones that no live worker will finish as dead.

    The queue is read before the processes and the workers' answers, and again after them:
    a task counts as dead only if it runs in both reads. A worker stores a task's result
    before it lets go of the task, so one that ends meanwhile reads as ended the second
    time, and one that starts meanwhile did not run the first time."""
    running = [item for item in snapshot(queue) if item.state == "running"]
    dead = _judge(queue, running, _processes()) if running else {}
    task_of = {item.rev: item.task_id for item in running}
    entries = snapshot(queue)
    for item in entries:
        if item.state == "running" and item.rev in dead and task_of[item.rev] == item.task_id:
            item.state, item.why = "dead", dead[item.rev]
    return entries


def params_files(repo) -> list[str]:
    """The params files the pipeline reads, relative to the repository root."""
    files = {os.path.relpath(dep.fs_path, repo.root_dir) for dep in repo.index.params}
    return sorted(files | {"params.yaml"}, key=lambda name: (name != "params.yaml", name))


def flat(tree, prefix: str = "") -> dict[str, object]:
    """Nested dicts as {"train.lr": 0.0002, ...}; lists stay values, as ``-S`` sets them."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                   else {f"{prefix}{key}": value})
    return out


def read_params(repo, rev: str | None, files: list[str]) -> dict[str, object]:
    """The params of commit ``rev`` (None: the workspace), flat, keyed file:key past the
    first file (params.yaml's keys read as ``-S`` writes them)."""
    from dvc.utils.serialize import load_path

    fs = repo.scm.get_fs(rev) if rev else repo.fs
    out = {}
    for i, name in enumerate(files):
        path = name if rev else os.path.join(repo.root_dir, name)
        try:
            tree = load_path(path, fs) if fs.exists(path) else {}
        except Exception as exc:  # noqa: BLE001 - a file that does not parse is shown so
            tree = {"<unreadable>": str(exc).splitlines()[0] if str(exc) else name}
        out.update((k if i == 0 else f"{name}:{k}", v) for k, v in flat(tree).items())
    return out


def show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def differs(repo, item: Entry, workspace: dict, files: list[str]) -> str:
    """``key=value`` of each param of the experiment's commit that the workspace lacks or
    sets otherwise; "?" when its commit is gone from git."""
    try:
        theirs = read_params(repo, item.rev, files)
    except Exception:  # noqa: BLE001 - a stash commit git has pruned
        return "?"
    keys = sorted(set(theirs) | set(workspace))
    return " ".join(f"{k}={show(theirs[k])}" if k in theirs else f"{k}=<unset>"
                    for k in keys if theirs.get(k, _UNSET) != workspace.get(k, _UNSET))


def status_command(repo, args: argparse.Namespace) -> int:
    """One line per experiment: name, stash rev, state, the params that differ."""
    entries = classify(repo.experiments.celery_queue)
    if not entries:
        print("gan-queue: no experiments in the queue")
        return 0
    files = params_files(repo)
    workspace = read_params(repo, None, files)
    width = max(len(item.name) for item in entries)
    for item in entries:
        line = f"{item.name:<{width}}  {item.rev[:7]}  {item.state:<7}  "
        line += differs(repo, item, workspace, files) or "(the workspace's params)"
        print(line + (f"  [{item.why}]" if item.why else ""))
    return 0


def recorded_exec_run(queue, rev: str, table) -> int | None:
    """The pid of the ``exec-run`` DVC recorded for ``rev`` if that very process still runs:
    the pid in ``<rev>.json`` (written once the process started), whose argv names the rev's
    infofile and which started before the record was written (a reused pid starts later)."""
    import psutil

    record = Path(queue.pid_dir, rev, rev + ".json")
    try:
        pid = int(json.loads(record.read_text())["pid"])
        written = record.stat().st_mtime
        started = psutil.Process(pid).create_time()
    except (OSError, ValueError, TypeError, KeyError, psutil.Error):
        return None
    if pid not in table or exec_runs(queue, {pid: table[pid]}).get(rev) != pid:
        return None
    return pid if started <= written + 1.0 else None  # create_time is read from clock ticks


def _temp_folder(queue, rev: str) -> str | None:
    """The experiment's temporary workspace if it is one of DVC's under .dvc/tmp/exps."""
    try:
        root = os.path.realpath(queue._load_info(rev).root_dir)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    exps = os.path.realpath(os.path.dirname(queue.pid_dir))
    return root if os.path.dirname(root) == exps else None  # never a folder outside it


def stop_leftovers(queue, item: Entry, table) -> None:
    """Stop what still runs of a dead experiment: the exec-run DVC recorded for it (see
    ``recorded_exec_run``) and the processes it started; nothing else, whatever folder it
    works in (a user's shell in the temporary workspace is the user's)."""
    import psutil

    pid = recorded_exec_run(queue, item.rev, table)
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


def _still_to_retry(queue, item: Entry) -> bool:
    """Whether ``item`` is still the failed or running task it was (not queued again by
    another gan-queue retry meanwhile)."""
    now = next((e for e in snapshot(queue) if e.rev == item.rev), None)
    return now is not None and now.state in ("failed", "running") and now.task_id == item.task_id


def _hold_stash(queue, held: ExitStack, item: Entry) -> None:
    """Take DVC's lock of the queue's stash refs into ``held``, waiting up to LOCK_WAIT
    seconds for another DVC process to let go of it (a worker taking a task holds it for
    a moment), or one GanError with DVC's whole message."""
    from dvc.lock import LockError
    from dvc.repo.experiments.refs import CELERY_FAILED_STASH
    from dvc.repo.experiments.utils import get_exp_rwlock

    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            held.enter_context(get_exp_rwlock(queue.repo,
                                              writes=[queue.ref, CELERY_FAILED_STASH]))
            return
        except LockError as exc:
            if time.monotonic() >= deadline:
                raise GanError(f"{item.name}: left as it was ({item.state}): "
                               f"{' '.join(str(exc).split())}") from None
        time.sleep(0.5)


def requeue(queue, item: Entry, table) -> bool:
    """Put a failed or dead experiment's own stash commit back in DVC's queue, once; False
    when another retry did meanwhile. Everything happens under DVC's lock of the queue's
    stash refs, taken first: a busy stash (a ``dvc exp run --queue`` elsewhere) changes
    nothing, and of two retries at once the second finds the experiment queued."""
    try:
        queue.scm.resolve_commit(item.rev)
    except Exception:  # noqa: BLE001 - scmrepo raises its own errors for a missing object
        raise GanError(f"{item.name}: its stash commit {item.rev[:7]} is gone from "
                       "git; queue it again with dvc exp run --queue") from None
    with ExitStack() as held:
        _hold_stash(queue, held, item)
        if not _still_to_retry(queue, item):
            return False
        _replace(queue, item, table)
    return True


def _replace(queue, item: Entry, table) -> None:
    """Remove what is left of the old attempt and queue the experiment's commit again."""
    from dvc.repo.experiments.queue.tasks import run_exp
    from dvc.utils.fs import remove

    entry = item.entry
    root = _temp_folder(queue, item.rev) if item.state == "dead" else None
    if item.state == "dead":  # what `dvc queue kill` does to a task whose process is gone
        stop_leftovers(queue, item, table)
        queue.celery.backend.mark_as_failure(item.task_id, None)
    queue.remove([entry.stash_rev])  # as `dvc queue remove`: message, result, failed stash
    # A task its worker took but never set up (a worker stopped right after taking it) still
    # has its stash entry, so DVC's remove takes it for queued and keeps its message.
    for msg, taken in queue._iter_processed():
        if taken.stash_rev == entry.stash_rev:
            queue.celery.AsyncResult(msg.headers["id"]).forget()
            if msg.delivery_tag:
                queue.celery.purge(msg.delivery_tag)
    for ext in (".json", ".pid", ".run"):  # the old attempt's process record; its log stays
        stale = Path(queue.pid_dir, entry.stash_rev, entry.stash_rev + ext)
        stale.unlink(missing_ok=True)
    users = sorted(pid for pid, (_, _, cwd) in _processes().items()
                   if root and (cwd == root or cwd.startswith(root + os.sep)))
    if users:
        print(f"gan-queue: left {root} in place: process {users[0]} works in it", flush=True)
    elif root and os.path.isdir(root):
        remove(root)
    message = queue.stash.format_message(entry.head_rev or entry.baseline_rev,
                                         entry.baseline_rev, entry.name, entry.branch)
    queue.scm.set_ref(queue.ref, entry.stash_rev, message=f"commit: {message}")
    queue.celery.signature(run_exp.s(entry.asdict(), **item.kwargs)).delay()


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
        return queue.start_workers(jobs)
    finally:
        for fd, copy in enumerate(saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


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
        if workers(queue, _processes()):
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
    queue = repo.experiments.celery_queue
    entries = classify(queue)
    targets = [item for item in entries if item.state in ("failed", "dead")]
    if not targets:
        print("gan-queue: nothing to retry: no failed or dead experiment in the queue")
        return 0
    files = params_files(repo)
    workspace = read_params(repo, None, files)
    table = _processes()
    for item in targets:
        params = differs(repo, item, workspace, files) or "the workspace's params"
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


def store_command(repo, args: argparse.Namespace) -> int:
    """List the resume store's states, or with --clean delete those no stage is using."""
    from gan import store
    from gan.config import load_section, read_params

    setting = "auto"
    if args.params.is_file():
        setting = load_section(read_params(args.params), "resume").store
    folder = store.folder(setting)
    if folder is None:
        print("gan-queue: resume.store is off: no state is kept outside the workspace")
        return 0
    if folder.is_dir() and not store.marked(folder):
        raise GanError(f"{folder}: not a resume store (no {store.MARK} in it: the store has "
                       "written nothing there); nothing listed or deleted")
    if args.clean:
        gone, left = store.clean(folder)
        kept = f"; {left} in use by a running stage kept" if left else ""
        print(f"gan-queue: deleted {gone} states from {folder}{kept}")
    else:
        from gan.resume import read_state  # torch only for this listing

        lines = store.describe(folder, lambda path: read_state(path)["step"])
        print(f"{folder}: {len(lines)} state{'s' if len(lines) != 1 else ''}")
        for line in lines:
            print(f"  {line}")
    skipped = store.foreign(folder)
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"gan-queue: left alone {len(skipped)} entries of {folder} that the store did "
              f"not write: {shown}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gan-queue", epilog="Details: docs/experiments.md",
                                description="Re-run what failed or died in DVC's experiment "
                                            "queue (dvc exp run --queue), and show its state.")
    sub = p.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="one line per experiment of the queue: name, "
                            "stash rev, queued/running/success/failed/dead, params that "
                            "differ from the workspace")
    status.set_defaults(func=status_command)
    retry = sub.add_parser("retry", help="re-queue every failed or dead experiment with its "
                           "own commit and params, then start the queue")
    retry.add_argument("-j", "--jobs", type=int, default=1,
                       help="queue workers to start, as dvc queue start -j (default 1)")
    retry.add_argument("--no-start", action="store_true",
                       help="re-queue only, for workers already running or started later "
                            "with dvc queue start")
    retry.add_argument("--wait", action="store_true",
                       help="wait until nothing is queued or running; exit 1 if a retried "
                            "experiment fails or dies again")
    retry.add_argument("--timeout", type=float, default=None,
                       help="--wait: give up after this many seconds (exit 2)")
    retry.set_defaults(func=retry_command)
    kept = sub.add_parser("store", help="the resume store: the training states kept outside "
                          "every workspace, by run (docs/resume.md)")
    kept.add_argument("--clean", action="store_true",
                      help="delete every state no running train stage holds")
    kept.add_argument("--params", type=Path, default=Path("params.yaml"),
                      help="its resume.store says where the store is (default: params.yaml)")
    kept.set_defaults(func=store_command)
    return p


def broken_record(root: str | None) -> Path | None:
    """The first file of DVC's queue under ``root`` (its messages and results, JSON with a
    base64 body for messages) that does not parse, if any."""
    import base64

    folder = Path(root or os.curdir, ".dvc", "tmp", "exps", "celery")
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file() or path.name.endswith(".lock"):
            continue
        try:
            record = json.loads(path.read_bytes())
            if isinstance(record, dict) and "body" in record:
                json.loads(base64.b64decode(record["body"], validate=True))
        except (OSError, ValueError, TypeError):
            return path
    return None


def _record_error(exc: Exception, root: str | None) -> str:
    """One line for an OSError or a record that does not decode while reading DVC's queue."""
    first = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    if isinstance(exc, NotADirectoryError | FileExistsError) and exc.filename:
        path = Path(exc.filename)
        while not path.exists() and path != path.parent:
            path = path.parent  # the file in the way
        return (f"{path}: a file where DVC keeps its queue's folders (.dvc/tmp/exps); move "
                "it away")
    if isinstance(exc, OSError):
        return f"{exc.filename or 'DVC queue'}: {exc.strerror or first}"
    broken = broken_record(root)
    where = f"{broken}: a broken record of DVC's queue" if broken else "DVC's queue records"
    return (f"{where} ({type(exc).__name__}: {first}); remove it (one experiment's message or "
            "result) and run gan-queue again")


def main(argv: list[str] | None = None) -> int:
    """The console script: one-line errors and exit code 2 for what the user can fix, 130
    for Ctrl-C."""
    args = _parser().parse_args(argv)
    _quiet_logging()
    from dvc.exceptions import DvcException
    from kombu.exceptions import KombuError

    root = None
    try:
        with open_repo() as repo:
            root = repo.root_dir
            return args.func(repo, args)
    except KeyboardInterrupt:
        print("gan-queue: interrupted; what it queued stays queued (gan-queue status)",
              file=sys.stderr)
        return 130
    except (GanError, DvcException, OSError, ValueError, KombuError) as exc:
        if os.environ.get("GAN_DEBUG") == "1":
            raise
        if isinstance(exc, GanError | DvcException):
            line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            line = _record_error(exc, root)
        print(f"error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
