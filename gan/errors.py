"""The project's exceptions and warnings, and its output streams. A leaf module: it imports
nothing of the project, so any stage can catch them."""

from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import IO, Any


class GanError(Exception):
    """An error the user can fix; stages print its one-line message and exit non-zero."""


class ConfigError(GanError):
    """A params value that is missing, unknown, mistyped or out of range."""


class Interrupted(GanError):
    """Training stopped on SIGINT/SIGTERM (after saving a resumable state when it has one)."""


class GanWarning(UserWarning):
    """Something the user should know that does not stop the run; one line, naming the file
    or key (``one_line_warnings`` prints it as ``warning: ...``)."""


def one_line_warnings() -> None:
    """Print every GanWarning as ``warning: <message>`` on stderr, without Python's source
    location and echoed line; other warnings keep Python's format."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, GanWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        else:
            shown(message, category, filename, lineno, file, line)

    if getattr(shown, "one_line", False):
        return
    show.one_line = True
    warnings.showwarning = show


# The errors of a write to a stream nobody reads: a closed pipe, a terminal hung up.
GONE = (errno.EPIPE, errno.EIO, errno.ECONNRESET)


class DroppedWhenClosed:
    """A text stream that forwards to ``stream`` until a write or flush finds its reader
    gone, then sends its file descriptor to os.devnull (so buffered text, C-level writes and
    the flush at exit go nowhere without an error) and drops everything after."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self.gone = False

    def _drop(self) -> None:
        self.gone = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):  # no descriptor: dropping is enough
            pass

    def _call(self, method: str, *args: Any) -> Any:
        if not self.gone:
            try:
                return getattr(self._stream, method)(*args)
            except OSError as exc:
                if exc.errno not in GONE:
                    raise
                self._drop()
        return len(args[0]) if args else None

    def write(self, text: str) -> int:
        return self._call("write", text)

    def flush(self) -> None:
        self._call("flush")

    def isatty(self) -> bool:
        return not self.gone and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Make sys.stdout and sys.stderr drop what is written once their reader is gone, so a
    stage whose output pipe closes goes on and saves its work (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, DroppedWhenClosed):
            setattr(sys, name, DroppedWhenClosed(stream))
