"""``gan-sample``: pictures from a trained checkpoint, outside DVC; ``gan-score``: scores
of any folder of images, as the evaluate stage scores samples.

    gan-sample grid   models/gan.pt -o grid.png   [--n 64] [--seed 0] [--label K]
    gan-sample walk   models/gan.pt -o walk.png   [--n 4] [--steps 10] [--method auto]
    gan-sample images models/gan.pt -o folder/    [--n 16]
    gan-score FOLDER [--classifier models/classifier.pt] [--data data/prepared] [--json]
                     [--nearest pairs.png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

from gan import checkpoint, io, sample
from gan.errors import GanError, one_line_warnings

# Images per latent walk: a row of 256 images of 28 px is already 7,000 px wide, and each
# walk of --n is generated at once.
MAX_STEPS = 256

SCORE_USAGE = """Score the PNG/JPEG images of FOLDER (any depth) as the evaluate stage scores
samples: in the judge's features, against the prepared test split, with N real training
images as the floor (keys ending in _real; memorised's floor is the test split's own
share), N being the folder's image count, and as many images of each kind of junk (keys
_junk_<kind>; a score junk fools is flagged flag_<score>_junk). Images are converted to
the judge's channels and fitted to its size; evaluate.seed and evaluate.batch_size come
from --params when that file exists, and so do the numerics (numerics.portable and
numerics.threads pinned as the stages pin them, so the scores are evaluate's, bit for bit)."""


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
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="its numerics section pins the arithmetic as the stages do "
                        "(default: params.yaml; absent: torch's own choice)")
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
    if not 2 <= args.steps <= MAX_STEPS:
        raise GanError(f"--steps: got {args.steps}, allowed: 2 to {MAX_STEPS}")
    if not 0 <= args.seed < 2**63:  # torch.Generator's seeds
        raise GanError(f"--seed: got {args.seed}, allowed: 0 to 2**63 - 1")
    if args.mode != "images" and args.out.is_dir():
        raise GanError(f"{args.out}: is a folder; {args.mode} writes one PNG, name a file")
    if args.mode != "images":  # refused before the checkpoint is read
        io.check_target(args.out)
        io.check_folder(args.out.parent, parents=False)
    trained = checkpoint.load_generator(args.checkpoint)
    generator, model, classes = trained.generator, trained.model, trained.classes
    dim, noise = model.latent_dim, model.noise
    if args.mode == "walk":
        method = sample.interpolation_method(args.method, noise)
        z = sample.interpolation_latents(n, args.steps, dim, args.seed, noise, method)
        row_labels = _labels(n, args.label, classes, model.conditional)
        labels = None if row_labels is None else row_labels.repeat_interleave(args.steps)
        images = sample.generate(generator, z, labels)
        sample.save_png(sample.to_grid_image(images, nrow=args.steps), args.out, parents=False)
        return f"gan-sample: {n} {method} walks of {args.steps} images -> {args.out}"
    z = sample.fixed_latent(n, dim, args.seed, noise)
    images = sample.generate(generator, z, _labels(n, args.label, classes,
                                                   model.conditional))
    if args.mode == "grid":
        sample.save_png(sample.to_grid_image(images), args.out, parents=False)
        return f"gan-sample: {n} images (seed {args.seed}) -> {args.out}"
    if args.out.exists() and not args.out.is_dir():
        raise GanError(f"{args.out}: exists and is not a folder (images writes n PNGs into one)")
    io.check_folder(args.out.parent, parents=False)  # the folder is ours, its parents not
    io.check_folder(args.out, parents=True)
    width = max(3, math.ceil(math.log10(n + 1)))
    for i, image in enumerate(images):
        sample.save_png(sample.to_grid_image(image[None], nrow=1, padding=0),
                        args.out / f"{i:0{width}d}.png", parents=False)
    return f"gan-sample: {n} PNGs (seed {args.seed}) -> {args.out}/"


def _one_line_errors(command, args: argparse.Namespace) -> int:
    """Print what ``command(args)`` returns; a GanError is one line on stderr, exit code 2;
    Ctrl-C is one line, exit code 130 (every file it writes is written whole or not at all)."""
    one_line_warnings()
    try:
        print(command(args))
    except KeyboardInterrupt:
        print(f"{_PROGS.get(command.__name__, 'gan')}: interrupted", file=sys.stderr)
        return 130
    except GanError as exc:
        if os.environ.get("GAN_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


_PROGS = {"sample_command": "gan-sample", "score_command": "gan-score"}


def main(argv: list[str] | None = None) -> int:
    """The console script: one-line errors and exit code 2 for what the user can fix."""
    return _one_line_errors(sample_command, _parser().parse_args(argv))


def _score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gan-score", description=SCORE_USAGE)
    p.add_argument("folder", type=Path, help="folder of PNG/JPEG images")
    p.add_argument("--classifier", type=Path, default=Path("models/classifier.pt"),
                   help="the judge the classifier stage wrote (default: models/classifier.pt)")
    p.add_argument("--data", type=Path, default=Path("data/prepared"),
                   help="prepared splits: test to compare with, train for the floor "
                        "(default: data/prepared)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="its evaluate section gives the seed and batch size, its numerics "
                        "section the arithmetic, as the stages do (default: params.yaml; "
                        "absent: their defaults and torch's own choice)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with metrics/eval.json's keys")
    p.add_argument("--nearest", type=Path, default=None, metavar="PNG",
                   help="also write the folder's images closest to a training image above "
                        "those training images (as outputs/pictures/nearest_train.png)")
    p.add_argument("--pairs", type=int, default=12,
                   help="--nearest: pairs in the picture (default 12)")
    return p


def stream_features(judge, paths: list[Path], size: int, channels: int, batch_size: int,
                    background: str = "white") -> tuple[torch.Tensor, torch.Tensor]:
    """The judge's (features (N, F), logits (N, K)) of the images at ``paths``, read
    ``batch_size`` at a time: one batch of pixels is held at once, whatever N (the same
    batches, so the same bits, as extracting them all at once). A progress bar on a
    terminal."""
    import numpy as np
    from tqdm import tqdm

    from gan import classifier, data, image_folder

    feats, logits = [], []
    with tqdm(total=len(paths), desc="gan-score: reading", unit="image", file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            pixels = np.stack([image_folder.read_image(path, size, channels, background)
                               for path in chunk])
            f, k = classifier.extract(judge, data.to_unit_range(pixels, size), batch_size)
            feats.append(f)
            logits.append(k)
            bar.update(len(chunk))
    return torch.cat(feats), torch.cat(logits)


def score_command(args: argparse.Namespace) -> str:
    """The scores of ``args.folder``, as text or one JSON line."""
    # Imported here: gan-sample needs none of the scoring modules.
    from gan import classifier, data, image_folder, metrics, runtime
    from gan.config import DataConfig, load_section, read_params

    if args.nearest is not None:  # before the judge and the images are read
        _check_png_path(args.nearest)
        if not 1 <= args.pairs <= 64:
            raise GanError(f"--pairs: got {args.pairs}, allowed: 1 to 64")
    params = read_params(args.params) if args.params.is_file() else {"evaluate": {}}
    cfg = load_section(params, "evaluate")
    judge, judge_cfg = classifier.load_classifier(args.classifier)
    channels, size, _ = judge_cfg["image_shape"]
    # transparent images go on the background prepare put the real ones on
    background = (params.get("data") or {}).get("background", DataConfig.background)
    paths = image_folder.image_paths(args.folder)
    n = len(paths)
    if n < metrics.MIN_SAMPLES:
        raise GanError(f"{args.folder}: holds {n} images; the scores need at "
                       f"least {metrics.MIN_SAMPLES}")
    test_data = data.load_prepared(args.data, "test")
    train_data = data.load_prepared(args.data, "train")
    classifier.check_compatible(judge_cfg, args.classifier, test_images=(
        test_data["images"].shape[1:], test_data["classes"]))
    judge = judge.to(runtime.select_device("auto"))
    metrics.check_test_split(test_data["images"].shape[0], args.data / "test.pt")
    feats, logits = stream_features(judge, paths, size, channels, cfg.batch_size, background)
    print(f"gan-score: read {n} images of {args.folder}", file=sys.stderr)
    warning = metrics.small_split_warning(test_data["images"].shape[0])
    if warning:  # after the images: an unreadable one is the only line
        print(warning, file=sys.stderr)
    scores = metrics.score_features(feats, logits, None, judge, train_data, test_data, cfg,
                                    show_progress=True)
    flags = metrics.judge_checks(scores, judge_cfg)
    for reason in flags.values():
        print(f"warning: {reason}", file=sys.stderr)
    scores = {"n_samples": n, **scores, **dict.fromkeys(flags, 1)}
    if args.nearest is not None:
        _nearest_picture(args, judge, feats, paths, (size, channels, background), train_data,
                         cfg.batch_size)
    if args.json:  # rounded and keyed as the evaluate stage writes metrics/eval.json
        return json.dumps({k: round(v, 6) for k, v in sorted(scores.items())})
    width = max(map(len, scores))
    return "\n".join(f"{name:<{width}}  {value:.6g}" for name, value in scores.items())


def _nearest_picture(args: argparse.Namespace, judge, feats: torch.Tensor, paths: list[Path],
                     shape: tuple[int, int, str], train_data: dict, batch_size: int) -> None:
    """--nearest: the folder's images closest to a training image, above those; only these
    images are read again."""
    import numpy as np

    from gan import classifier, data, image_folder, metrics, plots

    train_feats, _ = classifier.extract(judge, train_data["images"], batch_size)
    pairs = metrics.pairs_of_features(train_feats, feats, min(args.pairs, len(paths)))
    size, channels, background = shape
    pixels = np.stack([image_folder.read_image(paths[i], size, channels, background)
                       for i in pairs["samples"].tolist()])
    plots.save_figure(plots.nearest_figure(
        data.to_unit_range(pixels, size), train_data["images"][pairs["train"]],
        pairs["distance"], pairs["copies"], len(paths), pairs["bound"]), args.nearest,
        parents=False)
    print(f"gan-score: the {len(pairs['samples'])} images closest to a training image "
          f"-> {args.nearest}", file=sys.stderr)


def _check_png_path(path: Path) -> None:
    """Refuse, before the work, an output PNG path that names a folder or what is not a
    regular file, or lies in a folder that does not exist."""
    if path.is_dir():
        raise GanError(f"{path}: is a folder; --nearest writes one PNG, name a file")
    io.check_target(path)
    io.check_folder(path.parent, parents=False)


def score_main(argv: list[str] | None = None) -> int:
    """The ``gan-score`` console script."""
    return _one_line_errors(score_command, _score_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
