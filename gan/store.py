"""The resume store: resumable training states kept outside the workspace, by fingerprint.

The train stage saves its state to ``.resume/train.pt`` in the workspace, which dies with a
temporary workspace: ``dvc exp run --queue`` runs each experiment in one under
``.dvc/tmp/exps/``, and a killed worker's is removed. So the stage also saves the state here,
in a folder outside every workspace, under a name made of the run's fingerprint
(gan.resume.store_key: params, data, code, numerics, device, torch). Whichever workspace
runs the same run next (the experiment queued again, or ``dvc exp run`` of the same params
in the main workspace) finds the state by that name and continues bit for bit. A state
whose run finished is deleted; the store keeps at most ``resume.store_keep`` states,
dropping the least recently written first. ``gan-queue store`` lists it, ``gan-queue store
--clean`` deletes its states.

``resume.store``: ``auto`` is ``$GAN_RESUME_STORE`` when set, else
``$XDG_CACHE_HOME/gan-pipeline/resume`` (``~/.cache/...`` without XDG_CACHE_HOME); ``off``
keeps states in the workspace only; anything else is the folder itself.

The store owns only what it wrote. Its folder carries a mark (the file ``MARK``), written
only when the store makes the folder or finds it empty; a folder without the mark that holds
anything at all is refused before training, whatever the names in it. The store records the
name of every state before it writes it (the file ``RECORD``), and touches only regular
files named ``<32 hex digits>.pt`` that its record names, and their ``.lock`` files: never a
link, never a file it did not record (a user's file of the same form, there before the mark
or put there since, is listed as skipped and never deleted). Locks are opened without
following links.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gan.errors import GanError

SUFFIX = ".pt"
MARK = ".gan-resume-store"  # the file that makes a folder the store's
MARK_TEXT = (b"The resume store of gan-pipeline (gan/store.py). It deletes only regular files "
             b"named <32 hex digits>.pt here that it recorded in .gan-resume-store.states "
             b"before writing them, and their .lock files.\n")
RECORD = ".gan-resume-store.states"  # the names of the states the store wrote, one a line
STATE_NAME = re.compile(r"[0-9a-f]{32}\.pt")
# Names the store gives: its states, their locks, the temporary files of gan.io.write_atomic
# (".<name>.gan-tmp-<pid>-<random>.tmp") and of gan.io.check_writable
# (".probe.<pid>.<random>.tmp").
OWN_NAME = re.compile(r"[0-9a-f]{32}\.pt(\.lock)?|\.[0-9a-f]{32}\.pt\.[^/]*\.tmp"
                      r"|\.probe\.[0-9]+\.[^/]*\.tmp")


def folder(setting: str) -> Path | None:
    """The store's folder for a ``resume.store`` value, or None when it is ``off``."""
    if setting == "off":
        return None
    if not setting.strip():
        raise GanError(f"resume.store: got {setting!r}, expected auto, off or a folder (an "
                       "empty value would put the store in the project's own folder)")
    if setting != "auto":
        return Path(setting).expanduser()
    if os.environ.get("GAN_RESUME_STORE"):
        return Path(os.environ["GAN_RESUME_STORE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "gan-pipeline" / "resume"


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (a link to one is not)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def marked(store: Path) -> bool:
    """Whether ``store`` carries the store's mark (a regular file, not a link)."""
    return _regular(Path(store) / MARK)


def recorded(store: Path) -> set[str]:
    """The state names the store's record holds (none when the record is missing, a link or
    not a regular file)."""
    path = Path(store) / RECORD
    if not _regular(path):
        return set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return set()
    return {name for name in text.split() if STATE_NAME.fullmatch(name)}


def record(state: Path) -> None:
    """Add ``state``'s name to its store's record, before the state is written: only what
    the record names is ever pruned or cleaned. Appends of one short line from concurrent
    stages do not mix (O_APPEND); the record is never followed through a link."""
    state = Path(state)
    if state.name in recorded(state.parent):
        return
    try:
        fd = os.open(state.parent / RECORD,
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise GanError(f"resume.store: {state.parent / RECORD}: cannot write it "
                       f"({os.strerror(exc.errno or 0).lower()})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GanError(f"resume.store: {state.parent / RECORD}: not a regular file; "
                           "remove it")
        os.write(fd, f"{state.name}\n".encode())
    finally:
        os.close(fd)


def _entries(store: Path) -> list[str]:
    try:
        return sorted(os.listdir(store))
    except (FileNotFoundError, NotADirectoryError):
        return []


def states(store: Path) -> list[Path]:
    """The store's states, the most recently written first: regular files named by a
    fingerprint that the store's record names, in a marked folder; nothing else."""
    store = Path(store)
    if not marked(store):
        return []
    own = recorded(store)
    found = [store / name for name in _entries(store)
             if name in own and _regular(store / name)]
    return sorted(found, key=lambda p: (p.lstat().st_mtime_ns, p.name), reverse=True)


def foreign(store: Path) -> list[str]:
    """Names in ``store`` that the store did not write and never touches: other names,
    links or folders under its own names, and states (with their locks) its record does not
    name."""
    store = Path(store)
    own = recorded(store)

    def ours(name: str) -> bool:
        if not _regular(store / name):
            return False
        if name in (MARK, RECORD):
            return True
        state = name.removesuffix(".lock")
        if STATE_NAME.fullmatch(state):
            return state in own
        return OWN_NAME.fullmatch(name) is not None

    return [name for name in _entries(store) if not ours(name)]


def _same_or_inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def open_store(store: Path, avoid: Sequence[Path] = ()) -> list[str]:
    """Check ``store`` before training and mark it as the store's; the names in it that the
    store leaves alone (see ``foreign``). One GanError when the store would be a file, a
    link loop, one of ``avoid`` (the project's folder and output folders) or a folder that
    holds what the store did not write."""
    store = Path(store)
    try:
        real = store.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: Python < 3.13's link loop
        raise GanError(f"resume.store: {store}: cannot be resolved ({exc}); a symbolic link "
                       "loop? Point it at a folder") from None
    for folder in avoid:
        theirs = Path(folder).resolve()
        if _same_or_inside(theirs, real):
            raise GanError(f"resume.store: {store} is (or holds) the project's {folder}; the "
                           "store deletes old states, so give it a folder of its own "
                           "(default: auto)")
    try:
        real.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GanError(f"resume.store: {store} is a file or lies under one; it must be a "
                       "folder") from None
    except OSError as exc:
        raise GanError(f"resume.store: {store}: cannot make the folder "
                       f"({os.strerror(exc.errno or 0).lower()})") from None
    if marked(real):
        return foreign(real)
    others = _entries(real)  # without the mark, the store wrote none of them
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise GanError(f"resume.store: {store} holds {len(others)} entries the store did not "
                       f"write ({shown}) and no {MARK}; the store deletes old states, so give "
                       "it a new or empty folder of its own")
    try:
        fd = os.open(real / MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:  # another stage marked it meanwhile
        return foreign(real)
    except OSError as exc:
        raise GanError(f"resume.store: {store}: cannot write {MARK} in it "
                       f"({os.strerror(exc.errno or 0).lower()})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(MARK_TEXT)
    return []


def _in_use(path: Path) -> bool:
    """Whether a train stage holds the lock of the state at ``path`` (gan.io.exclusive)."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link: no stage of ours locks through one
            return False
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def remove(path: Path) -> bool:
    """Delete a state and its lock file unless a train stage is using it; whether it went."""
    if not _regular(path) or _in_use(path):
        return False
    path.unlink(missing_ok=True)
    lock = path.with_name(path.name + ".lock")
    if _regular(lock):
        lock.unlink(missing_ok=True)
    return True


def prune(store: Path, keep: int, current: Path | None = None) -> list[Path]:
    """Delete all but the ``keep`` most recently written states (never ``current`` or one in
    use); returns what went."""
    gone = []
    for path in states(store)[keep:]:
        if path != current and remove(path):
            gone.append(path)
    return gone


def describe(store: Path, step_of: Callable[[Path], object]) -> list[str]:
    """One line per stored state: its name, step (``step_of(path)``, which the caller that
    knows the state files' layout hands in), size and age, the newest first."""
    lines = []
    now = time.time()
    for path in states(store):
        try:
            step = step_of(path)
        except (GanError, KeyError, TypeError):
            step = "?"
        info = path.lstat()
        hours = (now - info.st_mtime) / 3600
        used = ", in use" if _in_use(path) else ""
        lines.append(f"{path.name}  step {step}  {info.st_size / 2**20:.1f} MB  "
                     f"{hours:.1f} h old{used}")
    return lines


def clean(store: Path) -> tuple[int, int]:
    """Delete every state no running stage holds: (deleted, left in use)."""
    found = states(store)
    gone = sum(remove(path) for path in found)
    return gone, len(found) - gone
