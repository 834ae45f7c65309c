"""Small datasets: params.yaml's recipe on folders of a few hundred or thousand images, with
and without train.augment, at equal steps, scored against the whole test split.

For each ``--sizes`` N, the first N Fashion-MNIST training images are written as a flat
folder of PNGs by gan.export_folder (what a user's own folder is) and read back as
``image_folder`` reads them; every ``--policies`` line then trains the recipe on all N of
them for ``--steps`` steps (train.steps set to it, so the learning-rate schedule is the
run's own). Every ``--every`` steps the EMA generator's FID on ``evaluate.train_fid_samples``
samples is logged (the curve); at the end ``evaluate.n_samples`` samples get the evaluate
stage's scores against the test split through models/classifier.pt, and ``memorised``
against the N folder images (its floor: the test split's share against them).

    python -m benchmarks.small_data --sizes 500,2000 --steps 4000 \
        --policies none,all,color,translation,cutout --out small_data.json --plot fid.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from gan import classifier, data, export_folder, image_folder, memory, metrics, train
from gan.config import load_section, read_params
from gan.errors import GanError
from gan.hooks import Every

ALL = ("color", "translation", "cutout")


def policy_list(name: str) -> tuple[str, ...]:
    """A --policies entry as train.augment: none, all, or policies joined by '+'."""
    if name == "none":
        return ()
    return ALL if name == "all" else tuple(name.split("+"))


def folder_split(n: int, mirror: str | None, work: Path) -> dict:
    """The first ``n`` training images, written as a flat PNG folder and read back."""
    images, labels, classes = export_folder.read_split("fashion_mnist", mirror, "train")
    folder = work / f"images_{n}"
    export_folder.export(folder, images, labels, classes, n, class_folders=False, tint=False,
                         size=None)
    pixels, _ = image_folder.read_images(folder, 28, 1)
    return {"images": data.to_unit_range(pixels, 28),
            "labels": torch.zeros(pixels.shape[0], dtype=torch.long), "classes": ["images"]}


def run(params: dict, split: dict, policies: tuple[str, ...], steps: int, every: int,
        judge, test: dict) -> dict:
    """Train one line and score it; returns its row (with its FID curve)."""
    model_cfg = load_section(params, "model")
    base = load_section(params, "train")
    eval_cfg = load_section(params, "evaluate")
    train_cfg = base.__class__(**{**base.__dict__, "steps": steps, "eval_every": 0,
                                  "snapshot_every": 0, "augment": policies or None})
    curve = metrics.training_fid(judge, test["images"], eval_cfg.train_fid_samples, model_cfg,
                                 1, eval_cfg.seed, eval_cfg.batch_size)
    points: list[tuple[int, float]] = []
    start = time.perf_counter()
    result = train.train(model_cfg, train_cfg, params["seed"], split,
                         hooks=(Every(every, lambda s, g: points.append((s, curve(g)))),),
                         progress=False, say=lambda _: None)
    seconds = time.perf_counter() - start
    images, _ = metrics.seeded_samples(result.generator, eval_cfg.n_samples, model_cfg, 1,
                                       eval_cfg.seed, eval_cfg.batch_size)
    feats, logits = classifier.extract(judge, images, eval_cfg.batch_size)
    scores = metrics.quality(test["feats"], feats, logits, eval_cfg.seed, test["radii"],
                             labelled=False, dc_radii=test["dc_radii"])
    scores["memorised"] = metrics.memorised(split["feats"], feats)
    return {"images": split["images"].shape[0], "augment": "+".join(policies) or "none",
            "steps": steps, "train_s": seconds, **scores, "curve": points}


def table(rows: list[dict]) -> str:
    """The rows as a markdown table, each FID also as a ratio to its size's "none" line."""
    lines = ["| images | train.augment | FID | ratio to none | precision | recall | density "
             "| coverage | memorised (floor) | train s |", "|" + "---|" * 10]
    for r in rows:
        none = next((o["fid"] for o in rows if o["images"] == r["images"]
                     and o["augment"] == "none"), float("nan"))
        lines.append(f"| {r['images']} | {r['augment']} | {r['fid']:.2f} | "
                     f"{r['fid'] / none:.2f}x | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['density']:.3f} | {r['coverage']:.3f} | {r['memorised']:.3f} "
                     f"({r['memorised_floor']:.3f}) | {r['train_s']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """FID against step, one panel per folder size, one line per policy line."""
    from gan import plots

    sizes = sorted({r["images"] for r in rows})
    fig, axes = plots.plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.6), squeeze=False,
                                   sharey=True)
    for ax, size in zip(axes[0], sizes, strict=True):
        for r in (r for r in rows if r["images"] == size):
            steps, fids = zip(*r["curve"], strict=True)
            ax.plot(steps, fids, marker="o", markersize=3, label=r["augment"],
                    linewidth=2 if r["augment"] in ("none", "+".join(ALL)) else 1)
        ax.set_title(f"{size} training images")
        ax.set_xlabel("generator step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(title="train.augment", fontsize=8)
    axes[0][0].set_ylabel("FID (train_fid_samples, log scale)")
    fig.tight_layout()
    plots.save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/prepared"),
                   help="prepared splits: the test split scored against")
    p.add_argument("--classifier", type=Path, default=Path("models/classifier.pt"))
    p.add_argument("--mirror", default=None, help="raw Fashion-MNIST files (data.mirror)")
    p.add_argument("--sizes", default="500,2000")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--every", type=int, default=500, help="steps between curve points")
    p.add_argument("--policies", default="none,all,color,translation,cutout",
                   help="lines: none, all, or policies joined by '+', comma-separated")
    p.add_argument("--out", type=Path, default=None, help="JSON of every row")
    p.add_argument("--plot", type=Path, default=None, help="PNG of the FID curves")
    args = p.parse_args()
    memory.keep_freed_memory()
    try:
        params = read_params(args.params)
        eval_cfg = load_section(params, "evaluate")
        judge, _ = classifier.load_classifier(args.classifier)
        test = data.load_prepared(args.data, "test")
        test["feats"], _ = classifier.extract(judge, test["images"], eval_cfg.batch_size)
        test["radii"] = metrics.knn_radii(test["feats"])
        test["dc_radii"] = metrics.knn_radii(test["feats"], metrics.DC_NEIGHBOURS)
        rows = []
        with tempfile.TemporaryDirectory(prefix="small-data-") as work:
            for size in (int(s) for s in args.sizes.split(",")):
                split = folder_split(size, args.mirror, Path(work))
                split["feats"], _ = classifier.extract(judge, split["images"])
                floor = metrics.memorised(split["feats"], test["feats"])
                for name in args.policies.split(","):
                    row = run(params, split, policy_list(name), args.steps, args.every, judge,
                              test)
                    rows.append({**row, "memorised_floor": floor})
                    print(f"{size} images, augment {row['augment']}: FID {row['fid']:.2f} "
                          f"({row['train_s']:.0f} s)", flush=True)
                    if args.out:
                        args.out.write_text(json.dumps(rows, indent=1))
    except GanError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"\n{args.steps} steps of params.yaml's recipe; {eval_cfg.n_samples} samples against "
          f"the {test['images'].shape[0]} test images; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
