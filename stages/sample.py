"""Stage sample: a grid of generated images from a fixed latent seed."""

from pathlib import Path

from gan import sample, train
from gan.config import load_section
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint")
    p.add_argument("--out", type=Path, required=True, help="grid PNG to write")
    args = p.parse_args()
    cfg = load_section(common.params(args.params), "sample")
    generator, config = train.load_generator(args.checkpoint)
    z = sample.fixed_latent(cfg.n, config["model"]["latent_dim"], cfg.seed)
    sample.save_png(sample.to_grid_image(sample.generate(generator, z)), args.out)
    print(f"sample: {cfg.n} images (seed {cfg.seed}) -> {args.out}")


if __name__ == "__main__":
    common.run(main)
