"""Stage sample: the sample grid, latent walks, arithmetic, real versus fake, evolution GIF."""

from pathlib import Path

from PIL import Image

from gan import checkpoint, data, plots, sample
from gan.config import load_section, read_params
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint")
    p.add_argument("--data", type=Path, required=True, help="prepared splits (test for real)")
    p.add_argument("--evolution", type=Path, required=True, help="training snapshot PNGs")
    p.add_argument("--out", type=Path, required=True, help="grid PNG to write")
    p.add_argument("--pictures", type=Path, required=True, help="folder for the other pictures")
    args = p.parse_args()
    cfg = load_section(read_params(args.params), "sample")
    trained = checkpoint.load_generator(args.checkpoint)
    generator, model, classes = trained.generator, trained.model, len(trained.classes)
    sample.interpolation_method(cfg.interpolation, model.noise)  # refuse a bad name first
    z = sample.fixed_latent(cfg.n, model.latent_dim, cfg.seed, model.noise)
    labels = sample.grid_labels(cfg.n, classes, model.conditional)
    sample.save_png(sample.to_grid_image(sample.generate(generator, z, labels)), args.out)

    real = data.load_prepared(args.data, "test")["images"]
    for name, image in sample.pictures(generator, model, classes, cfg, real).items():
        sample.save_png(image, args.pictures / f"{name}.png")
    terms = sample.arithmetic_images(generator, model, cfg.arithmetic_seed)
    plots.save_figure(plots.arithmetic_figure(terms), args.pictures / "arithmetic.png")
    # No snapshots (train.snapshot_every: 0) means no GIF, not an error.
    frames = [Image.open(path) for path in sorted(args.evolution.glob("step_*.png"))]
    if frames:
        sample.save_gif(frames, args.pictures / "evolution.gif", cfg.gif_frame_ms)
    print(f"sample: {cfg.n} images (seed {cfg.seed}) -> {args.out}; pictures and a "
          f"{len(frames)}-frame GIF -> {args.pictures}")


if __name__ == "__main__":
    common.run(main)
