"""The first stage's check of the whole params file: a run that cannot finish stops before
anything is downloaded.

download and prepare (either may be the first stage to run) call ``check_params``: every
section, each name it holds and the rules across sections. This module only refuses: a
params file it passes leaves every output as it would be without it. So, like the params
keys a stage reads only to refuse them early (dvc.yaml's header), no stage lists it or what
only it imports as a code dep (``tests/test_code_deps.py`` follows no import of it): a key
added to the ``train`` section, which it checks, leaves download and prepare up to date.
"""

from __future__ import annotations

from typing import Any

from gan import data, names, validate
from gan.config import SECTIONS, choose, load_section, load_seed


def check_params(params: dict[str, Any]) -> None:
    """Every section of a params file, each name it holds, and the rules across sections."""
    load_seed(params)
    data_cfg = load_section(params, "data")
    data.check_config(data_cfg)
    validate.check_run(load_section(params, "model"), load_section(params, "train"),
                       data_cfg.image_size)
    sample_cfg = load_section(params, "sample")
    choose(dict.fromkeys(("auto", *names.INTERPOLATIONS)), "sample.interpolation",
           sample_cfg.interpolation)
    for name in SECTIONS:
        if name not in ("data", "model", "train", "sample"):
            load_section(params, name)
