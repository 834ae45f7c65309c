"""Stage plot: loss curves and mean D outputs against step, as a PNG."""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.plot ... (dvc repro runs them so)")

from pathlib import Path

from gan.sections import load_section
from gan.sections.plot import PlotConfig
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--log-dir", type=Path, required=True, help="dvclive metrics TSV folder")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args, params = common.start("plot", p, computes=False)
    from gan import plots

    cfg = load_section(params, PlotConfig)
    log = plots.read_dvclive_metrics(args.log_dir)
    plots.save_figure(plots.loss_curves(log, cfg.smoothing, cfg.dpi), args.out)
    print(f"plot: {len(log)} logged points -> {args.out}")


if __name__ == "__main__":
    common.run(main)
