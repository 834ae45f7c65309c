"""Files the project writes: one atomic writer, and torch files with a format version on top.

Every output goes through ``write_atomic``, so a failure or a kill never leaves a
half-written file where a good one (or none) was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from gan.errors import GanError

# OSErrors that say the place cannot take the file, not that the code is wrong: each becomes
# one line naming the path.
WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
# In the name of every temporary file write_atomic makes, with the writer's process id.
TMP_TAG = "gan-tmp"


def write_error(path: Path, exc: OSError) -> GanError:
    """The one-line error for an OSError while writing ``path``."""
    reason = WRITE_ERRORS.get(exc.errno) or (exc.strerror or type(exc).__name__).lower()
    return GanError(f"{path}: cannot write it: {reason}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# A staging folder holds this file, written first by the process that made the folder: a
# folder is a killed run's leftover only if it has this file with a dead process's id, so a
# user's folder of a similar name is never taken for one.
STAGING_MARK = ".gan-staging"


def _remove_stale_staging(parent: Path, kind: str) -> None:
    """Remove the staging folders of killed runs in ``parent``: folders named ``.{kind}-``
    + a process id + ``-`` + mkstemp's random part, holding a STAGING_MARK file (not a link)
    that names the same process, which is gone."""
    form = re.compile(rf"\.{re.escape(kind)}-(\d+)-\w+")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = form.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        mark = entry / STAGING_MARK
        try:
            if not stat.S_ISREG(mark.lstat().st_mode):
                continue
            written = mark.read_text().strip()
        except OSError:
            continue
        pid = int(match.group(1))
        if written != str(pid) or pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(out_dir: Path, kind: str) -> Iterator[Path]:
    """A temporary folder ``.{kind}-{pid}-*`` beside ``out_dir``, removed on leaving, where
    ``out_dir`` is assembled before it replaces the old one; the stale folders of killed
    runs (marked as such by their run, see STAGING_MARK) go first. A full disk or a
    read-only folder is one GanError naming ``out_dir``."""
    parent = Path(out_dir).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(parent, kind)
        with tempfile.TemporaryDirectory(dir=parent, prefix=f".{kind}-{os.getpid()}-") as tmp:
            (Path(tmp) / STAGING_MARK).write_text(f"{os.getpid()}\n")
            yield Path(tmp)
    except OSError as exc:
        raise write_error(Path(out_dir), exc) from None


@contextlib.contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (``path``.lock) for the block, or raise one
    GanError naming the process that holds it.

    The kernel drops the lock when its holder exits, however it exits, so a kill -9 leaves
    no stale lock; the file itself stays (deleting a lock file races with its next taker).
    """
    lock = Path(path).with_name(Path(path).name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        # Never through a link: a planted one would have the pid written into its target.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise GanError(f"{lock}: a symbolic link where a lock file belongs; locks are "
                           "never opened through a link: remove it") from None
        raise write_error(lock, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GanError(f"{lock}: not a regular file where a lock file belongs: remove it")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise GanError(f"{path}: {what} is already running on it (process {holder}); "
                           f"wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def check_writable(folder: Path, *, parents: bool = True) -> None:
    """Make ``folder`` and write a file in it, or raise one GanError naming the folder: a
    stage that finds out at its end that it cannot save has wasted the work before.
    Without ``parents`` only ``folder`` itself is made, the folders above must exist."""
    folder = Path(folder)
    check_folder(folder.parent, parents)
    try:
        folder.mkdir(exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".probe.{os.getpid()}.",
                                     suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise write_error(folder, exc) from None


def _kind(mode: int) -> str:
    """What a file of ``mode`` is, in words, for one that is not a regular file."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_target(path: Path) -> None:
    """Refuse, in one GanError, a ``path`` that exists and is not a regular file (a folder,
    a FIFO, a socket, a device, or a link to one): writing there would replace what is not
    the project's, or feed a reader that is not a file (``/dev/full``, ``/proc/self/fd/1``)."""
    path = Path(path)
    try:
        info = path.stat()  # through links: a link to a FIFO is refused as the FIFO
    except FileNotFoundError:
        return  # nothing there, or a dangling link (replaced, its target untouched)
    except NotADirectoryError:
        raise GanError(f"{path}: lies under a file, not a folder; name a path in a "
                       "folder") from None
    except OSError as exc:
        raise write_error(path, exc) from None
    if not stat.S_ISREG(info.st_mode):
        link = " (through a symbolic link)" if path.is_symlink() else ""
        raise GanError(f"{path}: exists and is {_kind(info.st_mode)}{link}, not a regular "
                       "file; the project writes only regular files: name another path")


def check_folder(folder: Path, parents: bool, path: Path | None = None) -> None:
    """Make ``folder`` when ``parents`` (a folder the command owns: a stage's outputs),
    else refuse one that does not exist, in one GanError naming it (a folder that cannot
    be made: naming ``path``, the file to be written there, when given)."""
    folder = Path(folder)
    try:
        if folder.is_dir():
            return
        if folder.exists() or folder.is_symlink():
            raise GanError(f"{folder}: is not a folder; name a path in a folder")
        if not parents:
            raise GanError(f"{folder}: no such folder; make it first or name a path in a "
                           "folder that exists")
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GanError(f"{folder}: lies under a file, not a folder; name a path in a "
                       "folder") from None
    except OSError as exc:
        raise write_error(folder if path is None else path, exc) from None


def write_atomic(path: Path, write: Callable[[IO[bytes]], None], *,
                 parents: bool = True) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it, then rename it.

    ``path`` must be a regular file or nothing (``check_target``); its folder is made when
    ``parents`` (a stage's own output folders), else it must exist: console scripts pass
    ``parents=False`` for the paths a user names. The temporary file is named
    ``.<name>.gan-tmp-<pid>-<random>.tmp`` and removed on any error; no other file is ever
    removed (a killed writer's temporary file stays, with its process id in its name). On
    an error ``path`` is left as it was; any OSError is one GanError naming ``path``. Files
    are made readable by everyone (mkstemp's default is private).
    """
    path = Path(path)
    check_target(path)
    check_folder(path.parent, parents, path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp",
                                   prefix=f".{path.name}.{TMP_TAG}-{os.getpid()}-")
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        check_target(path)  # again: something may have been put there while writing
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def write_json(data: dict, path: Path, *, parents: bool = True) -> None:
    """Indented JSON with sorted keys and a final newline, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()), parents=parents)


def save_torch(value: Any, path: Path, *, parents: bool = True) -> None:
    """``torch.save`` through ``write_atomic``."""
    import torch  # here, not above: the plot stage writes through this module without torch

    # Serialised in memory first: torch's zip writer reports a full disk as a RuntimeError
    # about stream positions, a plain write as ENOSPC. The bytes are the same either way.
    buffer = io.BytesIO()
    torch.save(value, buffer)
    write_atomic(path, lambda handle: handle.write(buffer.getbuffer()), parents=parents)


def check_integrity(path: Path, kind: str) -> None:
    """Refuse a torch file whose bytes changed since it was written.

    torch.save writes a zip archive that carries the CRC-32 of every record, and torch.load
    never checks them: a flipped byte in a tensor loads as a wrong weight. Checking them
    reads the file once (about 20 ms for 20 MB) and leaves the file's bytes as they were,
    so every file written before this check is checked the same way.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise GanError(f"{path}: not a readable {kind} ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise GanError(f"{path}: corrupt {kind}: record {bad} fails its CRC-32 check (the file "
                       f"changed after it was written)")


def read_torch(path: Path, fmt: int, kind: str, missing: str = "") -> dict[str, Any]:
    """A dict ``save_torch`` wrote whose "format" is ``fmt`` (the ``kind`` of file's own
    version: a checkpoint's, a state's, a classifier's), with one GanError naming the file
    otherwise.

    ``missing`` is appended to the not-found message (what to run). Every torch file of the
    project holds only tensors and plain Python values, and is loaded with
    ``weights_only=True``: a pickle that would run code is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise GanError(f"{path}: {kind} not found{missing}")
    check_integrity(path, kind)
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GanError(f"{path}: not a readable {kind} ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise GanError(f"{path}: not a {kind} of this project (format {fmt} expected)")
    return ckpt
