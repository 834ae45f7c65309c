"""params.yaml's ``classifier`` section: the judge the scores use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig:
    section: ClassVar[str] = "classifier"

    # optimizer updates; None: gan.classifier.judge_steps' rule (epochs passes, at least
    # min_steps), so a small folder's judge gets the updates it needs
    steps: int | None = opt(None, min=1, max=10_000_000, recorded_when_off=False)
    epochs: int = opt(min=1, max=1000)
    min_steps: int = opt(900, min=1, max=10_000_000, recorded_when_off=False)
    batch_size: int = opt(min=1, max=65536)
    lr: float = opt(gt=0.0, max=1.0)
    width: int = opt(16, min=1, max=1024)
    seed: int = opt(min=0)
    # go on with a judge that fails a gate of gan.classifier.judge_gates (at chance, still
    # learning, or blind to junk), every score it feeds marked; false: the stage stops
    allow_weak: bool = opt(False, recorded_when_off=False)
