"""Is the judge sized by updates trained? Fashion-MNIST class folders of a few sizes, each
judge at classifier.steps' default rule against one trained 5 times longer.

Writes each folder's first N training images of Fashion-MNIST as PNGs in class folders (the
data.dataset image_folder layout), prepares them as the prepare stage does (1 in 10 per
class is the test split), and trains the judge of params.yaml's classifier section twice:
at gan.classifier.judge_steps' updates, and at 5 times as many. Prints one JSON line per
size: the updates, the held-out accuracy curve of each, and the gap on the folder's test
split and on 2,000 of Fashion-MNIST's own test images, which neither judge saw.

    python -m benchmarks.judge_steps --source /usr/share/datasets/fashion-mnist \\
        --sizes 1000 2000 5000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from gan import classifier, data, export_folder, image_folder
from gan.config import load_section, read_params

LONGER = 5
HELD_OUT = 2000


def folder_splits(source: str, n: int, work: Path) -> tuple[dict, dict]:
    """(train, test) prepared splits of a class folder of Fashion-MNIST's first n images."""
    images, labels, classes = export_folder.read_split("fashion_mnist", source, "train")
    export_folder.export(work / "images", images, labels, classes, n, class_folders=True,
                         tint=False, size=None)
    image_folder.download(str(work / "images"), work / "raw")
    data.prepare("image_folder", work / "raw", work / "prepared", 28)
    return (data.load_prepared(work / "prepared", "train"),
            data.load_prepared(work / "prepared", "test"))


def measure(cfg, train: dict, test: dict, held_out: dict) -> dict:
    """The default-sized judge and one LONGER times longer: updates, curves, accuracies."""
    out = {}
    for name, steps in (("default", None), ("longer", "x")):
        start = time.perf_counter()
        if steps is not None:
            per_epoch = train["images"].shape[0] // cfg.batch_size
            steps = LONGER * classifier.judge_steps(cfg, per_epoch)
        result = classifier.train_classifier(dataclasses.replace(cfg, steps=steps), train, test)
        out[name] = {"steps": result.steps, "curve": result.curve,
                     "still_learning": result.still_learning,
                     "fashion_test_accuracy": classifier.classifier_accuracy(
                         result.classifier, held_out["images"], held_out["labels"]),
                     "seconds": round(time.perf_counter() - start, 1)}
    out["gap_folder_test"] = out["longer"]["curve"][-1][1] - out["default"]["curve"][-1][1]
    out["gap_fashion_test"] = (out["longer"]["fashion_test_accuracy"]
                               - out["default"]["fashion_test_accuracy"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="folder of Fashion-MNIST's IDX files")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-steps", type=int, default=None,
                   help="classifier.min_steps instead of the params file's")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_section(read_params(args.params), "classifier")
    if args.min_steps is not None:
        cfg = dataclasses.replace(cfg, min_steps=args.min_steps)
    images, labels, classes = export_folder.read_split("fashion_mnist", args.source, "test")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="judge-steps-") as tmp:
            train, test = folder_splits(args.source, n, Path(tmp))
            # the folder's classes are its subfolders' names, in their sorted order
            index = torch.tensor([train["classes"].index(name.replace("/", "-"))
                                 for name in classes])
            held_out = {"images": data.to_unit_range(images[:HELD_OUT], 28),
                        "labels": index[torch.from_numpy(labels[:HELD_OUT])]}
            print(json.dumps({"images": n, **measure(cfg, train, test, held_out)}), flush=True)


if __name__ == "__main__":
    main()
