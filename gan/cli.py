"""``gan-sample``: pictures from a trained checkpoint, outside DVC.

    gan-sample grid   models/gan.pt -o grid.png   [--n 64] [--seed 0] [--label K]
    gan-sample walk   models/gan.pt -o walk.png   [--n 4] [--steps 10] [--method auto]
    gan-sample images models/gan.pt -o folder/    [--n 16]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

from gan import checkpoint, sample
from gan.errors import GanError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gan-sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("grid", "walk", "images"),
                   help="grid: one PNG of n images; walk: n latent walks, one per row; "
                        "images: n PNGs in a folder")
    p.add_argument("checkpoint", type=Path, help="a checkpoint the train stage wrote")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="PNG to write (grid, walk) or folder (images)")
    p.add_argument("--n", type=int, default=None,
                   help="images (grid: 64, images: 16) or walks (walk: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent batch (default 0)")
    p.add_argument("--steps", type=int, default=10, help="walk: images per walk (default 10)")
    p.add_argument("--method", choices=("auto", *sample.INTERPOLATIONS), default="auto",
                   help="walk: linear, spherical, or auto (spherical for normal noise)")
    p.add_argument("--label", type=int, default=None,
                   help="conditional models: the class of every image (default: cycle)")
    return p


def _labels(n: int, label: int | None, classes: list, conditional: bool) -> torch.Tensor | None:
    if not conditional:
        if label is not None:
            raise GanError("--label: this checkpoint's model is not conditional")
        return None
    if label is None:
        return sample.grid_labels(n, len(classes), True)
    if not 0 <= label < len(classes):
        raise GanError(f"--label: got {label}, allowed: 0 to {len(classes) - 1} "
                       f"({', '.join(map(str, classes))})")
    return torch.full((n,), label, dtype=torch.long)


def sample_command(args: argparse.Namespace) -> str:
    """Write what ``args`` ask for and return a one-line summary."""
    defaults = {"grid": 64, "walk": 4, "images": 16}
    n = defaults[args.mode] if args.n is None else args.n
    if not 1 <= n <= 4096:
        raise GanError(f"--n: got {n}, allowed: 1 to 4096")
    if args.steps < 2:
        raise GanError(f"--steps: got {args.steps}, must be at least 2")
    trained = checkpoint.load_generator(args.checkpoint)
    generator, model, classes = trained.generator, trained.model, trained.classes
    dim, noise = model.latent_dim, model.noise
    if args.mode == "walk":
        method = sample.interpolation_method(args.method, noise)
        z = sample.interpolation_latents(n, args.steps, dim, args.seed, noise, method)
        row_labels = _labels(n, args.label, classes, model.conditional)
        labels = None if row_labels is None else row_labels.repeat_interleave(args.steps)
        images = sample.generate(generator, z, labels)
        sample.save_png(sample.to_grid_image(images, nrow=args.steps), args.out)
        return f"gan-sample: {n} {method} walks of {args.steps} images -> {args.out}"
    z = sample.fixed_latent(n, dim, args.seed, noise)
    images = sample.generate(generator, z, _labels(n, args.label, classes,
                                                   model.conditional))
    if args.mode == "grid":
        sample.save_png(sample.to_grid_image(images), args.out)
        return f"gan-sample: {n} images (seed {args.seed}) -> {args.out}"
    if args.out.exists() and not args.out.is_dir():
        raise GanError(f"{args.out}: exists and is not a folder (images writes n PNGs into one)")
    width = max(3, math.ceil(math.log10(n + 1)))
    for i, image in enumerate(images):
        sample.save_png(sample.to_grid_image(image[None], nrow=1, padding=0),
                        args.out / f"{i:0{width}d}.png")
    return f"gan-sample: {n} PNGs (seed {args.seed}) -> {args.out}/"


def main(argv: list[str] | None = None) -> int:
    """The console script: one-line errors and exit code 2 for what the user can fix."""
    args = _parser().parse_args(argv)
    try:
        print(sample_command(args))
    except GanError as exc:
        if os.environ.get("GAN_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
