"""params.yaml's ``plot`` section: the loss curves' figure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class PlotConfig:
    section: ClassVar[str] = "plot"

    smoothing: int = opt(1, min=1, help="a moving-average window in logged points")
    dpi: int = opt(100, min=30, max=600)
