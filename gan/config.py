"""Every params section by name, for the tools that read the whole params file.

The sections themselves live one per module in ``gan/sections/`` (``gan/sections/train.py``
holds ``TrainConfig``), with what they share in ``gan.sections``. The stages and the library
they import take the section they read from there, never from here: a stage's code deps
(dvc.yaml) are the files it imports, and this module imports every section, so a key added
to ``train`` would re-run download, prepare and classifier too (``tests/test_code_deps.py``
keeps this module out of every stage). The tests, ``gan-queue``, ``gan-score``, the
benchmarks and ``gan.preflight``'s whole-file check (which no stage lists, see there) read
sections by name through ``load_section`` and ``SECTIONS``.
"""

from __future__ import annotations

from typing import Any

from gan.errors import ConfigError
from gan.sections import (  # noqa: F401  (re-exported for the tools above)
    choose,
    from_params,
    is_off,
    load_seed,
    read_params,
    to_dict,
    to_record,
)
from gan.sections import load_section as _load_section
from gan.sections.classifier import ClassifierConfig
from gan.sections.data import DataConfig
from gan.sections.evaluate import EvaluateConfig
from gan.sections.model import ModelConfig
from gan.sections.numerics import NumericsConfig
from gan.sections.plot import PlotConfig
from gan.sections.resume import ResumeConfig
from gan.sections.sample import SampleConfig
from gan.sections.train import TrainConfig

SECTIONS: dict[str, type] = {cls.section: cls for cls in (
    DataConfig, ModelConfig, TrainConfig, ResumeConfig, SampleConfig, PlotConfig,
    ClassifierConfig, EvaluateConfig, NumericsConfig)}


def load_section(params: dict[str, Any], name: str) -> Any:
    """The validated dataclass of section ``name`` of a params dict."""
    if name not in SECTIONS:
        raise ConfigError(f"{name}: not a params section, allowed: {', '.join(SECTIONS)}")
    return _load_section(params, SECTIONS[name])
