"""The project's exceptions and warnings. A leaf module: it imports nothing of the project, so
any stage can catch them."""

import sys
import warnings


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
