"""params.yaml's ``evaluate`` section: how many samples the scores take, and how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    section: ClassVar[str] = "evaluate"

    n_samples: int = opt(10000, min=4)  # gan.metrics.MIN_SAMPLES: k-NN needs k + 1
    seed: int = opt(0, min=0)
    batch_size: int = opt(500, min=1, max=65536)
    train_fid_samples: int = opt(2000, min=2)
