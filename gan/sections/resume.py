"""params.yaml's ``resume`` section: when and where training saves its resumable state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class ResumeConfig:
    """How often training saves its resumable state: no output depends on it."""

    section: ClassVar[str] = "resume"

    checkpoint_every: int = opt(500, min=0)
    store: str = opt("auto", path=True)  # gan.store.folder: auto | off | any folder
    store_keep: int = opt(20, min=1, max=100000)
