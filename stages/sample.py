"""Stage sample: the sample grid, latent walks, arithmetic, real versus fake, evolution GIF,
and the samples nearest to training images."""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.sample ... (dvc repro runs them so)")

from pathlib import Path

from gan.sections import load_section
from gan.sections.sample import SampleConfig
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint")
    p.add_argument("--data", type=Path, required=True, help="prepared splits (test for real)")
    p.add_argument("--evolution", type=Path, required=True, help="training snapshot PNGs")
    p.add_argument("--out", type=Path, required=True, help="grid PNG to write")
    p.add_argument("--pictures", type=Path, required=True, help="folder for the other pictures")
    p.add_argument("--classifier", type=Path, required=True,
                   help="the judge whose features find each sample's nearest training image")
    args, params = common.start("sample", p)
    from PIL import Image

    from gan import checkpoint, classifier, data, metrics, plots, sample

    cfg = load_section(params, SampleConfig)
    trained = checkpoint.load_generator(args.checkpoint)
    generator, model, classes = trained.generator, trained.model, len(trained.classes)
    sample.interpolation_method(cfg.interpolation, model.noise)  # refuse a bad name first
    z = sample.fixed_latent(cfg.n, model.latent_dim, cfg.seed, model.noise)
    labels = sample.grid_labels(cfg.n, classes, model.conditional)
    sample.save_png(sample.to_grid_image(sample.generate(generator, z, labels)), args.out)

    real = data.load_prepared(args.data, "test")["images"]
    for name, image in sample.pictures(generator, model, classes, cfg, real).items():
        sample.save_png(image, args.pictures / f"{name}.png")
    judge, judge_cfg = classifier.load_classifier(args.classifier)
    classifier.check_compatible(judge_cfg, args.classifier,
                                generated_images=(trained.image_shape, trained.classes))
    pool = sample.generate(generator, sample.fixed_latent(cfg.nearest_pool, model.latent_dim,
                                                          cfg.seed + 5, model.noise),
                           sample.grid_labels(cfg.nearest_pool, classes, model.conditional))
    train = data.load_prepared(args.data, "train")["images"]
    pairs = metrics.closest_pairs(judge, pool, train, cfg.nearest)
    plots.save_figure(plots.nearest_figure(pool[pairs["samples"]], train[pairs["train"]],
                                           pairs["distance"], pairs["copies"], cfg.nearest_pool,
                                           pairs["bound"]),
                      args.pictures / "nearest_train.png")
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
