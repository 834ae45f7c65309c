"""The pictures of docs/own_images.md's "A judge trained to fit", from real runs.

    python docs/judge_pictures.py calibration   # the committed run: samples, real, junk
    python docs/judge_pictures.py curves docs/judge_steps_2026-12-07.jsonl
    python docs/judge_pictures.py sizes --source /usr/share/datasets/fashion-mnist

calibration: eight images of each row evaluate scores (the real floor's training images,
the committed generator's samples, the four kinds of junk, made as evaluate makes them from
evaluate.seed), each row captioned with its precision, recall and KID from
metrics/eval.json, and the flag evaluate wrote beside any of them.
curves: the judge's held-out accuracy against its updates, at the default rule and 5 times
longer, per folder size, from the JSON lines of ``python -m benchmarks.judge_steps``.
sizes: eight images of a folder of 28 px images, prepared as the prepare stage does at
data.image_size 28 and at 64.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gan import checkpoint, data, export_folder, image_folder, junk, sample  # noqa: E402
from gan.config import load_section, read_params  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHOWN = 8


def strip(ax: plt.Axes, images: torch.Tensor, caption: str) -> None:
    """One row of ``images`` (n, C, S, S) in [-1, 1] with ``caption`` on its left."""
    ax.imshow(sample.to_grid_image(images, nrow=len(images)), cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(caption, rotation=0, ha="right", va="center", fontsize=8)


def calibration(out: Path) -> None:
    params = read_params(ROOT / "params.yaml")
    seed = load_section(params, "evaluate").seed
    scores = json.loads((ROOT / "metrics" / "eval.json").read_text())
    real = data.load_prepared(ROOT / "data" / "prepared", "train")["images"]
    real = sample.pick_real(real, SHOWN, seed)
    trained = checkpoint.load_generator(ROOT / "models" / "gan.pt")
    latent = sample.fixed_latent(SHOWN, trained.model.latent_dim, seed, trained.model.noise)
    fakes = sample.generate(trained.generator.eval(), latent)

    def caption(name: str, suffix: str) -> str:
        parts = [f"{score} {scores[score + suffix]:.2f}" if score != "kid" else
                 f"KID {scores[score + suffix]:.3f}" for score in ("precision", "recall", "kid")]
        flagged = [score for score in ("precision", "recall", "kid")
                   if suffix.startswith("_junk") and scores.get(f"flag_{score}_junk")
                   and _as_good(score, scores[score + suffix], scores[score + "_real"])]
        note = f"\nflagged: {', '.join(flagged)} as good as real" if flagged else ""
        return f"{name}\n" + ", ".join(parts) + note

    rows = [(real, caption("real training images (the floor)", "_real")),
            (fakes, caption("the committed generator's samples", ""))]
    rows += [(junk.junk_images(real, kind, seed), caption(f"junk: {kind}", f"_junk_{kind}"))
             for kind in junk.JUNK_KINDS]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8.5, 0.8 * len(rows)), dpi=100)
    for ax, (images, text) in zip(axes, rows, strict=True):
        strip(ax, images, text)
    fig.subplots_adjust(left=0.33, right=0.99, top=0.99, bottom=0.01, hspace=0.12)
    fig.savefig(out)
    print(f"wrote {out}")


def _as_good(score: str, value: float, floor: float) -> bool:
    """Whether junk's ``value`` of ``score`` is as good as the real floor's (the flag's rule)."""
    return value <= floor if score in ("fid", "kid") else value >= floor


def curves(results: Path, out: Path) -> None:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.3 * len(rows), 3.2), dpi=100,
                             sharey=True, squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        for name, style in (("default", "-o"), ("longer", "--s")):
            steps, accuracy = zip(*row[name]["curve"], strict=True)
            ax.plot(steps, [100 * a for a in accuracy], style, markersize=3,
                    label=f"{name}: {row[name]['steps']} updates, "
                          f"{100 * row[name]['fashion_test_accuracy']:.1f} % held out")
        ax.set_ylim(75, 95)  # 1 image of the 1,000-image folder's 96 is a point
        ax.set_title(f"{row['images']:,} images", fontsize=9)
        ax.set_xlabel("judge updates")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("folder test accuracy (%)")
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


def sizes(source: str, out: Path) -> None:
    images, labels, classes = export_folder.read_split("fashion_mnist", source, "train")
    strips = []
    with tempfile.TemporaryDirectory(prefix="judge-pictures-") as tmp:
        work = Path(tmp)
        export_folder.export(work / "images", images, labels, classes, 100, class_folders=True,
                             tint=False, size=None)
        image_folder.download(str(work / "images"), work / "raw")
        for size in (28, 64):
            data.prepare(data.IMAGE_FOLDER, work / "raw", work / f"prepared{size}", size)
            split = data.load_prepared(work / f"prepared{size}", "train")["images"][:SHOWN]
            strips.append((split, f"image_size {size}\n({size * size:,} pixels each)"))
    fig, axes = plt.subplots(2, 1, figsize=(8.5, 2.0), dpi=100)
    for ax, (images, text) in zip(axes, strips, strict=True):
        strip(ax, images, text)
    fig.subplots_adjust(left=0.2, right=0.99, top=0.99, bottom=0.01, hspace=0.1)
    fig.savefig(out)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="picture", required=True)
    sub.add_parser("calibration").add_argument(
        "--out", type=Path, default=ROOT / "docs" / "junk_calibration.png")
    c = sub.add_parser("curves")
    c.add_argument("results", type=Path, help="JSON lines of benchmarks.judge_steps")
    c.add_argument("--out", type=Path, default=ROOT / "docs" / "judge_curves.png")
    s = sub.add_parser("sizes")
    s.add_argument("--source", required=True, help="folder of Fashion-MNIST's IDX files")
    s.add_argument("--out", type=Path, default=ROOT / "docs" / "image_sizes.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.picture == "calibration":
        calibration(args.out)
    elif args.picture == "curves":
        curves(args.results, args.out)
    else:
        sizes(args.source, args.out)


if __name__ == "__main__":
    main()
