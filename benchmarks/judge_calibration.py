"""Does the judge rank images sensibly? Its scores of real images made worse on purpose.

Draws ``--n`` real training images (evaluate.seed's draw, as evaluate's floor), scores them
as they are, with Gaussian noise of std 0.1, 0.2 and 0.5 added on the [-1, 1] scale (then
clipped to it), replaced by uniform noise in [-1, 1], and (labelled data) drawn from one
class only, each against the test split in the judge's features (gan.metrics.score_images,
the evaluate stage's scoring). A judge that means something gives FID rising strictly down
the noise rows and recall falling. Works for the labelled classifier and for the rotation
judge of a folder without classes alike.

    python -m benchmarks.judge_calibration --data data/prepared --classifier models/classifier.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gan import classifier, data, metrics
from gan.config import EvaluateConfig

ALTERATIONS = ("real", "noise std 0.1", "noise std 0.2", "noise std 0.5", "uniform noise")
ONE_CLASS = 8  # Fashion-MNIST's "Bag"; the one-class row of labelled data


def altered(images: torch.Tensor, name: str, seed: int) -> torch.Tensor:
    """``images`` (N, C, S, S) in [-1, 1] altered as ``name`` says, seeded."""
    gen = torch.Generator().manual_seed(seed)
    if name == "real":
        return images
    if name == "uniform noise":
        return torch.rand(images.shape, generator=gen) * 2 - 1
    std = float(name.rsplit(" ", 1)[1])
    return (images + std * torch.randn(images.shape, generator=gen)).clamp(-1, 1)


def calibrate(judge: torch.nn.Module, train_data: dict, test_data: dict, n: int,
              seed: int = 0, batch_size: int = 500) -> dict[str, dict[str, float]]:
    """{alteration: the evaluate stage's scores of n altered real training images}."""
    pick = torch.randperm(train_data["images"].shape[0],
                          generator=torch.Generator().manual_seed(seed))[:n]
    real = train_data["images"][pick]
    cfg = EvaluateConfig(n_samples=n, seed=seed, batch_size=batch_size)
    rows = {name: metrics.score_images(altered(real, name, seed + 1), None, judge,
                                       train_data, test_data, cfg)
            for name in ALTERATIONS}
    if len(train_data["classes"]) > ONE_CLASS:
        one = train_data["images"][train_data["labels"] == ONE_CLASS][:n]
        rows[f"one class only ({train_data['classes'][ONE_CLASS]})"] = metrics.score_images(
            one, None, judge, train_data, test_data, cfg)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--classifier", type=Path, default=Path("models/classifier.pt"))
    p.add_argument("--n", type=int, default=10000, help="real training images altered")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = p.parse_args()
    judge, cfg = classifier.load_classifier(args.classifier)
    rows = calibrate(judge, data.load_prepared(args.data, "train"),
                     data.load_prepared(args.data, "test"), args.n, args.seed)
    kind = cfg.get("task", "labelled classifier")
    print(f"judge: {kind}, {len(cfg['classes'])} classes, {args.n} images per row")
    print("| images | FID | recall | precision | density | coverage | memorised |\n"
          "|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | {s['fid']:.2f} | {s['recall']:.2f} | {s['precision']:.2f} | "
              f"{s['density']:.2f} | {s['coverage']:.2f} | {s['memorised']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
