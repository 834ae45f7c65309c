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

import torch

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


def write_error(path: Path, exc: OSError) -> GanError | None:
    """The one-line error for an OSError of WRITE_ERRORS while writing ``path``, else None."""
    reason = WRITE_ERRORS.get(exc.errno)
    return None if reason is None else GanError(f"{path}: cannot write it: {reason}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(folder: Path, prefix: str, sep: str, suffix: str = "") -> None:
    """Remove what killed writers left in ``folder`` (a kill -9 skips every cleanup):
    entries named ``prefix``, the writer's process id, ``sep``, mkstemp's random part and
    ``suffix``, whose process is gone, and those named without an id (made before writers
    put theirs in the name)."""
    if not folder.is_dir():
        return
    form = re.compile(rf"{re.escape(prefix)}(?:(\d+){re.escape(sep)})?\w+{re.escape(suffix)}")
    for entry in folder.iterdir():
        match = form.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match.group(1)) if match.group(1) else None
        if pid is not None and (pid == os.getpid() or _alive(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def staging_dir(out_dir: Path, kind: str) -> Iterator[Path]:
    """A temporary folder ``.{kind}-{pid}-*`` beside ``out_dir``, removed on leaving, where
    ``out_dir`` is assembled before it replaces the old one; the stale folders of killed
    runs go first. A full disk or a read-only folder is one GanError naming ``out_dir``."""
    parent = Path(out_dir).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale(parent, f".{kind}-", "-")
        with tempfile.TemporaryDirectory(dir=parent, prefix=f".{kind}-{os.getpid()}-") as tmp:
            yield Path(tmp)
    except OSError as exc:
        raise (write_error(Path(out_dir), exc) or exc) from None


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
        raise (write_error(lock, exc) or exc) from None
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


def check_writable(folder: Path) -> None:
    """Make ``folder`` and write a file in it, or raise one GanError naming the folder: a
    stage that finds out at its end that it cannot save has wasted the work before."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".probe.{os.getpid()}.",
                                     suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise (write_error(folder, exc) or exc) from None


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it, then rename it.

    On any error the temporary file is removed and ``path`` is left as it was; a full disk,
    a read-only folder or a missing permission is one GanError naming ``path``. Files are
    made readable by everyone (mkstemp's default is private).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path.parent, f".{path.name}.", ".", ".tmp")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=".tmp")
    except OSError as exc:
        raise (write_error(path, exc) or exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        error = write_error(path, exc) if isinstance(exc, OSError) else None
        if error is not None:
            raise error from None
        raise


def write_json(data: dict, path: Path) -> None:
    """Indented JSON with sorted keys and a final newline, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))


def save_torch(value: Any, path: Path) -> None:
    """``torch.save`` through ``write_atomic``."""
    # Serialised in memory first: torch's zip writer reports a full disk as a RuntimeError
    # about stream positions, a plain write as ENOSPC. The bytes are the same either way.
    buffer = io.BytesIO()
    torch.save(value, buffer)
    write_atomic(path, lambda handle: handle.write(buffer.getbuffer()))


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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GanError(f"{path}: not a readable {kind} ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise GanError(f"{path}: not a {kind} of this project (format {fmt} expected)")
    return ckpt
