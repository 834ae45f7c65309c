"""Stage prepare: raw files -> float tensors in [-1, 1] with labels, train and test splits."""

from pathlib import Path

from gan import data
from gan.config import load_section
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--raw", type=Path, required=True, help="folder of raw files")
    p.add_argument("--out", type=Path, required=True, help="folder for the prepared splits")
    p.add_argument("--metrics", type=Path, required=True, help="data metrics JSON")
    args = p.parse_args()
    cfg = load_section(common.params(args.params), "data")
    metrics = data.prepare(cfg.dataset, args.raw, args.out, cfg.image_size,
                           cfg.channels)
    common.write_json(metrics, args.metrics)
    print(f"prepare: {metrics['train']['count']} train and {metrics['test']['count']} test "
          f"images of {cfg.image_size} px in [{metrics['train']['min']}, "
          f"{metrics['train']['max']}] -> {args.out}")


if __name__ == "__main__":
    common.run(main)
