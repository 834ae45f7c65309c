"""params.yaml's ``sample`` section: the pictures of the sample stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    section: ClassVar[str] = "sample"

    n: int = opt(min=1, max=1024)
    seed: int = opt(min=0)
    interpolation: str = opt("auto")  # auto or gan.sample.INTERPOLATIONS
    interpolation_rows: int = opt(6, min=1, max=64)
    interpolation_steps: int = opt(10, min=2, max=64)
    arithmetic_seed: int = opt(7, min=0)
    real_vs_fake: int = opt(32, min=1, max=512)
    per_class: int = opt(8, min=1, max=64)
    gif_frame_ms: int = opt(400, min=20, max=10000)
    nearest: int = opt(12, min=1, max=64)
    nearest_pool: int = opt(2000, min=1, max=100000)
