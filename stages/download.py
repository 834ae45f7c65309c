"""Stage download: the dataset's raw files (IDX, or the user's images), checksummed."""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.download ... (dvc repro runs them so)")

from pathlib import Path

from gan.sections import load_section
from gan.sections.data import DataConfig
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder for the raw files")
    args, params = common.start("download", p, computes=False)
    from gan import data, preflight

    # The first stage of the pipeline: refuse a run that cannot finish before any work.
    preflight.check_params(params)
    cfg = load_section(params, DataConfig)
    sources = data.download(cfg.dataset, args.out, cfg.mirror, cfg.path)
    source = cfg.path if cfg.dataset == data.IMAGE_FOLDER else \
        Path(next(iter(sources.values()))).parent
    print(f"download: {cfg.dataset}: {len(sources)} files verified from {source} "
          f"into {args.out}")


if __name__ == "__main__":
    common.run(main)
