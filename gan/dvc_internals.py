"""The one door to DVC's Python side: the only module of gan/ and stages/ that imports DVC
or reaches into its queue, its repository objects or its ``.dvc/tmp`` layout.

DVC documents its command line and ``dvc.api``; everything ``gan-queue`` and
``gan-compare`` need beyond that (the celery queue's taken tasks and results, the stash lock,
the worker names, where it keeps the queue) is DVC's own inside, which any release may
change. So each such name this module uses stands in ``NEEDS`` with what it is for, and
``missing()`` tries every one against the installed DVC: ``tests/test_dvc_internals.py``
fails with one line per name it lacks, and both commands refuse to start without them
(``check``). pyproject.toml bounds ``dvc`` to the releases that test has passed
(``SUPPORTED``; docs/experiments.md, "Which DVC").

DVC is imported inside the functions here, never at the top: a DVC without one of the
names must still import this module, so that ``missing()`` can say which.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from contextlib import ExitStack
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import NamedTuple

from gan.errors import GanError

SUPPORTED = ">=3.50,<3.68"  # pyproject.toml's dvc bound; tests/test_dvc_internals.py holds both
QUEUE_DIR = (".dvc", "tmp", "exps", "celery")  # DVC's queue (messages, results), from the root
EXPS_DIR = ".dvc/tmp/exps"  # where DVC keeps the queue's folders, as the user's errors name it
STASH = "refs/exps/celery/stash"  # the queue's stash ref: each queued experiment a commit
FAILED_STASH = "refs/exps/celery/failed"
_Q = "dvc.repo.experiments.queue.celery.LocalCeleryQueue"
_ANY = object()


class Need(NamedTuple):
    """A name of DVC (or of the libraries DVC runs the queue with) that this module uses."""

    path: str  # a module, then attributes: dvc.repo.experiments.utils.get_exp_rwlock
    why: str  # what this module does with it
    user: str = "queue"  # the command that needs it: queue or both (gan-compare too)
    value: object = _ANY  # the value it must have (a layout both DVC and this module name)
    params: tuple[str, ...] = ()  # parameters it must take
    text: str = ""  # a piece of its source that must stand in it (what this module copies)


NEEDS = (
    Need("dvc.repo.Repo", "open the repository", "both"),
    Need("dvc.exceptions.NotDvcRepoError", "say 'not a DVC repository'", "both"),
    Need("dvc.exceptions.DvcException", "DVC's errors as one line", "both"),
    Need("dvc.scm.Git", "refuse a repository without git", "both"),
    Need("dvc.utils.serialize.load_yaml", "read dvc.lock's params as DVC reads them", "both"),
    Need("dvc.repo.experiments.show.show", "the rows of dvc exp show", "both",
         params=("all_branches", "all_commits")),
    Need("dvc.repo.experiments.serialize.ExpState.dumpd", "a row of dvc exp show as JSON",
         "both"),
    Need("scmrepo.git.Git.get_fs", "read a file of an experiment's commit", "both"),
    Need("scmrepo.git.Git.get_rev", "--baseline HEAD", "both"),
    Need("scmrepo.git.Git.resolve_commit", "check that a stash commit is still in git"),
    Need("scmrepo.git.Git.set_ref", "put a stash commit back on the queue's stash"),
    Need("dvc.repo.experiments.Experiments.celery_queue", "the queue"),
    Need("dvc.repo.index.Index.params", "the params files the pipeline reads"),
    Need("dvc.utils.serialize.load_path", "read a params file of a commit"),
    Need("dvc.utils.fs.remove", "remove a dead experiment's temporary workspace"),
    Need("dvc.lock.LockError", "tell a busy stash from other errors"),
    Need("dvc.repo.experiments.utils.get_exp_rwlock", "lock the queue's stash refs",
         params=("repo", "writes")),
    Need("dvc.repo.experiments.refs.CELERY_STASH", "the queue's stash ref", value=STASH),
    Need("dvc.repo.experiments.refs.CELERY_FAILED_STASH", "the failed experiments' stash ref",
         value=FAILED_STASH),
    Need("dvc.repo.experiments.utils.EXEC_TMP_DIR", "the queue's folder, .dvc/tmp/exps",
         value="exps"),
    Need("dvc.repo.experiments.utils.EXEC_PID_DIR", "the exec-run records, .dvc/tmp/exps/run",
         value="run"),
    Need(f"{_Q}.CELERY_DIR", "the queue's messages, .dvc/tmp/exps/celery", value="celery"),
    Need(f"{_Q}.iter_queued", "the queued experiments"),
    Need(f"{_Q}._iter_processed", "the taken tasks, with their celery messages"),
    Need(f"{_Q}._load_info", "a taken task's result and temporary workspace"),
    Need(f"{_Q}.remove", "remove an entry as dvc queue remove does"),
    Need(f"{_Q}.start_workers", "dvc queue start -j N"),
    Need(f"{_Q}.celery", "the queue's celery app: results, inspect, new tasks"),
    Need(f"{_Q}.wdir", "the queue folder its worker names derive from"),
    Need(f"{_Q}.pid_dir", "where DVC records each exec-run (pid, infofile)"),
    Need(f"{_Q}.stash", "the stash message of a queued experiment"),
    Need(f"{_Q}.scm", "the queue's git"),
    Need(f"{_Q}._spawn_worker", "tell this repository's workers by their node name",
         text='node_name = f"dvc-exp-{wdir_hash}-{num}@localhost"'),
    Need(f"{_Q}._spawn_worker", "tell this repository's workers by their node name",
         text='wdir_hash = hashlib.sha256(self.wdir.encode("utf-8")).hexdigest()[:6]'),
    Need("dvc.repo.experiments.queue.base.BaseStashQueue.get_infofile_path",
         "know an exec-run by its --infofile, run/<rev>/<rev>.run",
         text='f"{name}{BaseExecutor.INFOFILE_EXT}"'),
    Need("dvc.repo.experiments.executor.base.BaseExecutor.INFOFILE_EXT", "the infofile's end",
         value=".run"),
    Need("dvc_task.proc.process.ManagedProcess.info_path", "the exec-run's pid, <rev>.json",
         text='f"{self.name}.json"'),
    Need("dvc_task.proc.process.ManagedProcess.pidfile_path", "the exec-run's <rev>.pid",
         text='f"{self.name}.pid"'),
    Need("dvc.repo.experiments.stash.ExpStash.format_message", "the stash message",
         params=("rev", "baseline_rev", "name", "branch")),
    Need("dvc.repo.experiments.queue.tasks.run_exp", "send the experiment's task again",
         params=("entry_dict", "copy_paths", "message")),
    Need("dvc.repo.experiments.queue.base.QueueEntry.stash_rev", "an entry's stash commit"),
    Need("dvc.repo.experiments.queue.base.QueueEntry.name", "an entry's name"),
    Need("dvc.repo.experiments.queue.base.QueueEntry.head_rev", "the stash message"),
    Need("dvc.repo.experiments.queue.base.QueueEntry.baseline_rev", "the stash message"),
    Need("dvc.repo.experiments.queue.base.QueueEntry.branch", "the stash message"),
    Need("dvc.repo.experiments.queue.base.QueueEntry.asdict", "the task's entry_dict"),
    Need("dvc.repo.experiments.executor.base.ExecutorInfo.result", "a task's result"),
    Need("dvc.repo.experiments.executor.base.ExecutorInfo.root_dir", "its temporary workspace"),
    Need("dvc.repo.experiments.executor.base.ExecutorResult.exp_hash", "a success"),
    Need("dvc.repo.experiments.executor.base.ExecutorResult.ref_info", "a success's name"),
    Need("dvc_task.app.filesystem.FSApp.purge", "drop a taken task's message"),
    Need("celery.backends.base.Backend.mark_as_failure", "mark a dead task failed, as "
         "dvc queue kill does"),
    Need("kombu.exceptions.KombuError", "a broken record of the queue as one line"),
)


def _lookup(path: str):
    """The object ``path`` names: the longest module it starts with, then attributes (a
    dataclass field or NamedTuple field counts); LookupError naming nothing if it is gone."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    else:
        raise LookupError(path)
    for name in parts[cut:]:
        if hasattr(obj, name):
            obj = getattr(obj, name)
        elif isinstance(obj, type) and is_dataclass(obj) and name in {f.name for f in fields(obj)}:
            obj = _ANY  # a field without a default: only instances have it
        else:
            raise LookupError(path)
    return obj


def _source(obj) -> str:
    target = getattr(obj, "func", None) or getattr(obj, "fget", None) or obj
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return ""


def _problem(need: Need) -> str | None:
    """What the installed DVC lacks of ``need``, in a few words, or None."""
    try:
        obj = _lookup(need.path)
    except LookupError:
        return f"lacks {need.path}"
    if need.value is not _ANY and obj != need.value:
        return f"has {need.path} = {obj!r}, not {need.value!r}"
    if need.params:
        try:
            have = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            have = {}
        gone = [p for p in need.params if p not in have]
        if gone:
            return f"has {need.path} without the parameter(s) {', '.join(gone)}"
    if need.text and need.text not in _source(obj):
        return f"has {need.path} without {need.text!r}"
    return None


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("dvc")
    except PackageNotFoundError:
        return "(none)"


def missing(user: str = "queue", needs: tuple[Need, ...] | None = None) -> list[str]:
    """One line per name of ``needs`` (default NEEDS; those ``user`` needs, and "queue" needs
    all) that the installed DVC lacks or has otherwise."""
    lines = []
    for need in NEEDS if needs is None else needs:
        if user == "queue" or need.user == "both":
            problem = _problem(need)
            if problem:
                lines.append(f"the installed DVC {version()} {problem}: gan/dvc_internals.py "
                             f"needs it ({need.why})")
    return lines


def check(user: str) -> None:
    """GanError (its first line the first name missing) unless the installed DVC has every
    name ``user`` (queue or compare) needs."""
    lines = missing(user)
    if lines:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise GanError(f"{lines[0]}{more}; the project supports dvc{SUPPORTED}: pip install "
                       "-r requirements.lock")


# ---- what both commands share --------------------------------------------------------------

def quiet_logging() -> None:
    """DVC, celery and kombu log warnings of their own; the commands print one line each
    (GAN_DEBUG=1 shows everything)."""
    if os.environ.get("GAN_DEBUG") == "1":
        logging.basicConfig(level=logging.DEBUG)
        return
    logging.getLogger().addHandler(logging.NullHandler())
    for name in ("dvc", "dvc_task", "celery", "kombu", "scmrepo"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)


def _found(*paths: str) -> tuple:
    """The objects of ``paths`` the installed versions have (``check`` names the others)."""
    found = []
    for path in paths:
        try:
            found.append(_lookup(path))
        except LookupError:
            pass
    return tuple(found)


def dvc_errors() -> tuple[type[Exception], ...]:
    """DVC's exception class: what DVC raises for what the user can fix or look at."""
    return _found("dvc.exceptions.DvcException")


def broker_errors() -> tuple[type[Exception], ...]:
    """kombu's exception class: what reading a broken record of the queue raises."""
    return _found("kombu.exceptions.KombuError")


def open_repo(prog: str, path: str = os.curdir):
    """DVC's Repo for ``path`` (or a folder above it), with git: experiments are git commits.
    Refused in one line when the installed DVC lacks a name ``prog`` needs (``check``)."""
    check("queue" if prog == "gan-queue" else "compare")
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc.scm import Git

    try:
        repo = Repo(path)
    except NotDvcRepoError:
        raise GanError(f"{os.path.abspath(path)}: not a DVC repository (no .dvc folder here "
                       f"or above); run {prog} in the project") from None
    if not isinstance(repo.scm, Git):
        repo.close()
        raise GanError(f"{repo.root_dir}: not a git repository; DVC keeps experiments as "
                       "git commits")
    return repo


def flat(tree, prefix: str = "") -> dict[str, object]:
    """Nested dicts keyed as DVC keys params and metrics ({"train.lr": 0.0002, ...}, as
    ``-S`` sets them and ``dvc exp show`` shows them); lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                   else {f"{prefix}{key}": value})
    return out


def load_yaml(path: Path) -> dict:
    """A YAML file (dvc.lock) read as DVC reads it (YAML 1.2: ``1e-4`` is a number)."""
    from dvc.utils.serialize import load_yaml as load

    return load(path)


def show_rows(repo, all_branches: bool, all_commits: bool) -> list[dict]:
    """The rows of ``dvc exp show --json``: HEAD and its experiments (every branch's or
    commit's when asked), as plain JSON."""
    import json

    shown = repo.experiments.show(all_branches=all_branches, all_commits=all_commits)
    return json.loads(json.dumps([exp.dumpd() for exp in shown], default=str))


def read_text(repo, rev: str, path: str) -> str | None:
    """The text of ``path`` in commit ``rev``, None if the commit has no such file."""
    fs = repo.scm.get_fs(rev)
    return fs.read_text(path) if fs.exists(path) else None


def head(repo) -> str:
    """The commit HEAD names."""
    return repo.scm.get_rev()


# ---- params of commits ---------------------------------------------------------------------

def params_paths(repo) -> list[str]:
    """The params files the pipeline reads, relative to the repository root, params.yaml
    first."""
    files = {os.path.relpath(dep.fs_path, repo.root_dir) for dep in repo.index.params}
    return sorted(files | {"params.yaml"}, key=lambda name: (name != "params.yaml", name))


def params_reader(repo, rev: str | None):
    """A function of a params file's name (relative to the root) that parses that file of
    commit ``rev`` (None: the workspace) as DVC parses params, {} if absent, its parse error
    passing through. Getting it fails when git lacks the commit."""
    from dvc.utils.serialize import load_path

    fs = repo.scm.get_fs(rev) if rev else repo.fs

    def load(name: str):
        path = name if rev else os.path.join(repo.root_dir, name)
        return load_path(path, fs) if fs.exists(path) else {}

    return load


# ---- the queue ------------------------------------------------------------------------------

class Taken(NamedTuple):
    """A task a worker took from the queue: DVC's entry, celery's task id, the copy_paths and
    message it was queued with, and whether it has a result."""

    entry: object  # DVC's QueueEntry: handed back to this module only
    rev: str
    name: str | None
    task_id: str
    extra: dict
    ended: bool


def experiment_queue(repo):
    """DVC's experiment queue of ``repo`` (``dvc exp run --queue``)."""
    return repo.experiments.celery_queue


def queued(queue) -> list[tuple[object, str, str | None]]:
    """(entry, stash rev, name) of each experiment not taken yet."""
    return [(e, e.stash_rev, e.name) for e in queue.iter_queued()]


def taken(queue) -> list[Taken]:
    """The tasks workers took: running (no result yet) or ended."""
    out = []
    for msg, entry in queue._iter_processed():
        _, kwargs, _ = msg.decode()
        task_id = msg.headers["id"]
        extra = {k: kwargs[k] for k in ("copy_paths", "message") if kwargs.get(k)}
        ended = queue.celery.AsyncResult(task_id).ready()
        out.append(Taken(entry, entry.stash_rev, entry.name, task_id, extra, ended))
    return out


def outcome(queue, rev: str) -> tuple[bool, str | None]:
    """(whether the ended task of ``rev`` made an experiment, that experiment's name): the
    rule of DVC's ``iter_success``; an unreadable result is a failure."""
    try:
        result = queue._load_info(rev).result
    except (OSError, ValueError, TypeError, KeyError):
        return False, None
    if result is None or not result.exp_hash or not result.ref_info:
        return False, None
    return True, result.ref_info.name


def temp_folder(queue, rev: str) -> str | None:
    """The experiment's temporary workspace if it is one of DVC's under .dvc/tmp/exps."""
    try:
        root = os.path.realpath(queue._load_info(rev).root_dir)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    exps = os.path.realpath(os.path.dirname(queue.pid_dir))
    return root if os.path.dirname(root) == exps else None  # never a folder outside it


def node_prefix(queue) -> str:
    """The start of this repository's worker node names: DVC's ``_spawn_worker`` names them
    ``dvc-exp-<first 6 hex of sha256(queue folder)>-<n>@localhost``."""
    import hashlib

    return f"dvc-exp-{hashlib.sha256(queue.wdir.encode('utf-8')).hexdigest()[:6]}-"


def run_dir(queue) -> str:
    """The folder of DVC's exec-run records: ``<rev>/<rev>.run`` (the infofile it passes
    ``exec-run``), ``<rev>.json`` and ``<rev>.pid`` (the process, once started)."""
    return queue.pid_dir


def record(queue, rev: str, ext: str) -> Path:
    """The exec-run record of ``rev`` ending in ``ext`` (.json, .pid or .run)."""
    return Path(queue.pid_dir, rev, rev + ext)


def ask(queue, nodes: list[str], timeout: float) -> tuple[dict, dict]:
    """celery's inspect of the workers ``nodes``, as ``dvc queue status`` asks it: {node:
    [task]} of the active tasks and of the reserved ones (taken, not started)."""
    inspect_ = queue.celery.control.inspect(destination=nodes, timeout=timeout,
                                            limit=len(nodes))
    return inspect_.active() or {}, inspect_.reserved() or {}


def lock_stash(queue, held: ExitStack) -> str | None:
    """Take DVC's lock of the queue's stash refs into ``held``; DVC's message, on one line,
    when another DVC process holds it."""
    from dvc.lock import LockError
    from dvc.repo.experiments.utils import get_exp_rwlock

    try:
        held.enter_context(get_exp_rwlock(queue.repo, writes=[STASH, FAILED_STASH]))
    except LockError as exc:
        return " ".join(str(exc).split())
    return None


def has_commit(queue, rev: str) -> bool:
    """Whether git still has the stash commit ``rev``."""
    try:
        queue.scm.resolve_commit(rev)
    except Exception:  # noqa: BLE001 - scmrepo raises its own errors for a missing object
        return False
    return True


def mark_failed(queue, task_id: str) -> None:
    """What ``dvc queue kill`` does to a task whose process is gone."""
    queue.celery.backend.mark_as_failure(task_id, None)


def remove(queue, rev: str) -> None:
    """Remove the entry of ``rev`` as ``dvc queue remove`` does (message, result, failed
    stash), and the old attempt's exec-run records; its log stays."""
    queue.remove([rev])
    # A task its worker took but never set up (a worker stopped right after taking it) still
    # has its stash entry, so DVC's remove takes it for queued and keeps its message.
    for msg, entry in queue._iter_processed():
        if entry.stash_rev == rev:
            queue.celery.AsyncResult(msg.headers["id"]).forget()
            if msg.delivery_tag:
                queue.celery.purge(msg.delivery_tag)
    for ext in (".json", ".pid", ".run"):
        record(queue, rev, ext).unlink(missing_ok=True)


def remove_folder(path: str) -> None:
    """Remove a temporary workspace as DVC removes it (read-only git objects included)."""
    from dvc.utils.fs import remove as dvc_remove

    dvc_remove(path)


def queue_again(queue, entry, extra: dict) -> None:
    """Put ``entry``'s stash commit back on the stash and send a new task for it, as
    ``dvc exp run --queue`` does; ``extra``: the copy_paths and message it was queued with."""
    from dvc.repo.experiments.queue.tasks import run_exp

    message = queue.stash.format_message(entry.head_rev or entry.baseline_rev,
                                         entry.baseline_rev, entry.name, entry.branch)
    queue.scm.set_ref(STASH, entry.stash_rev, message=f"commit: {message}")
    queue.celery.signature(run_exp.s(entry.asdict(), **extra)).delay()


def start_workers(queue, jobs: int) -> int:
    """``dvc queue start -j jobs``: the number of workers it started."""
    return queue.start_workers(jobs)


def queue_folder(root: str | None) -> Path:
    """The folder of DVC's queue records (messages, results) of the repository at ``root``."""
    return Path(root or os.curdir, *QUEUE_DIR)
