"""params.yaml's ``numerics`` section: how the CPU computes (every stage reads it first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class NumericsConfig:
    """How the CPU computes (gan/numerics.py): portable pins the threads and kernels so
    that every x86-64 machine writes the same bits; off lets torch use what it finds."""

    section: ClassVar[str] = "numerics"

    portable: bool = opt(True)
    threads: int = opt(2, min=1, max=1024)
