"""Progress of a long loop, suited to where it goes.

On a terminal: tqdm's live bar. On a file or a pipe (``dvc repro > log``, ``dvc queue
logs``, CI), where each of tqdm's refreshes would stay as a frame of its own, a plain line
every ``EVERY_PERCENT`` of the loop or every ``EVERY_SECONDS``, whichever comes first, and
one at the end: a few dozen lines for a whole run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

EVERY_PERCENT = 5
EVERY_SECONDS = 30.0


class LineProgress:
    """Iterates over ``iterable`` as tqdm does, writing a line to ``file`` now and then;
    ``set_postfix`` adds values (the last losses) to the next line."""

    def __init__(self, iterable: Iterable[T], desc: str, unit: str, total: int, initial: int,
                 file: IO[str], clock: Callable[[], float] = time.monotonic):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total, self.initial, self.n = total, initial, initial
        self.file, self.clock = file, clock
        self.postfix = ""
        self.started = self.said_at = clock()
        self.said_percent = self.percent()

    def percent(self) -> int:
        return 100 * self.n // self.total if self.total else 100

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def line(self) -> str:
        elapsed = self.clock() - self.started
        done = self.n - self.initial
        rate = f", {done / elapsed:.3g} {self.unit}/s" if elapsed > 0 and done else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        return (f"{self.desc}: {self.n}/{self.total} {self.unit}s ({self.percent()}%), "
                f"{tqdm.format_interval(elapsed)}{rate}{postfix}")

    def say(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self.said_at = self.clock()
        self.said_percent = self.percent()

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable:
            yield item
            self.n += 1
            crossed = self.percent() // EVERY_PERCENT > self.said_percent // EVERY_PERCENT
            if crossed or self.n == self.total or \
                    self.clock() - self.said_at >= EVERY_SECONDS:
                self.say()


def progress(iterable: Iterable[T], *, desc: str, unit: str, total: int, initial: int = 0,
             enabled: bool = True, file: IO[str] | None = None) -> Any:
    """``iterable`` with its progress shown on ``file`` (stderr): a live bar on a terminal,
    plain lines elsewhere, nothing when not ``enabled``. The result has ``set_postfix``."""
    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    if not enabled or (isatty is not None and isatty()):
        return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, file=file,
                    disable=not enabled, dynamic_ncols=True)
    return LineProgress(iterable, desc, unit, total, initial, file)
