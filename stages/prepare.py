"""Stage prepare: raw files -> float tensors in [-1, 1] with labels, train and test splits."""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.prepare ... (dvc repro runs them so)")

from pathlib import Path

from gan.sections import load_section
from gan.sections.data import DataConfig
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--raw", type=Path, required=True, help="folder of raw files")
    p.add_argument("--out", type=Path, required=True, help="folder for the prepared splits")
    p.add_argument("--metrics", type=Path, required=True, help="data metrics JSON")
    args, params = common.start("prepare", p)
    from gan import data, preflight
    from gan.io import write_json

    # The first stage to run after a data.* change: refuse a run that cannot finish.
    preflight.check_params(params)
    cfg = load_section(params, DataConfig)
    metrics = data.prepare(cfg.dataset, args.raw, args.out, cfg.image_size,
                           cfg.channels, cfg.background)
    write_json(metrics, args.metrics)
    copies = metrics["duplicates"]
    print(f"prepare: {metrics['train']['count']} train and {metrics['test']['count']} test "
          f"images of {cfg.image_size} px in [{metrics['train']['min']}, "
          f"{metrics['train']['max']}], {metrics['transparent']} with transparency (put on "
          f"{cfg.background}), {copies['train'] + copies['test'] + copies['across']} exact "
          f"copies -> {args.out}")


if __name__ == "__main__":
    common.run(main)
