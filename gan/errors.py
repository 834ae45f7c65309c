"""The project's exceptions. A leaf module: it imports nothing, so any stage can catch them."""


class GanError(Exception):
    """An error the user can fix; stages print its one-line message and exit non-zero."""


class ConfigError(GanError):
    """A params value that is missing, unknown, mistyped or out of range."""


class Interrupted(GanError):
    """Training stopped on SIGINT/SIGTERM (after saving a resumable state when it has one)."""
