"""Write an IDX dataset (Fashion-MNIST, MNIST, KMNIST) out as a folder of PNG images.

    python -m gan.export_folder OUT [--dataset fashion_mnist] [--source DIR] [--split train]
        [--n 3000] [--classes] [--tint] [--size 28] [--overwrite]

A folder like this is what ``data.dataset: image_folder`` reads (docs/own_images.md): with
``--classes`` one subfolder per class (the labels), without it one flat folder (no labels).
``--tint`` colours each class with its own hue (RGB files), ``--size`` resizes. OUT must
be new or empty (``--overwrite`` writes over what it holds).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from gan import data, io
from gan.errors import GanError

# One RGB colour per class for --tint: the 10 hues of matplotlib's tab10 palette.
TINTS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
         (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def read_split(dataset: str, source: str | None, split: str) -> tuple[np.ndarray, np.ndarray,
                                                                    list[str]]:
    """(uint8 images (N, H, W), int64 labels (N,), class names) of a verified raw split.

    ``source``: a raw folder (a mirror of the .gz files or download's data/raw); None: the
    download stage's search (data.mirror's rules).
    """
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        raw = Path(tmp) / "raw"
        data.download(dataset, raw, source)
        images, labels = data.load_raw(dataset, raw)[split]
    return images, labels, list(data.dataset_spec(dataset).classes)


def to_image(pixels: np.ndarray, label: int, tint: bool, size: int | None) -> Image.Image:
    """One grayscale (H, W) uint8 image as a PIL image, tinted by class and resized."""
    if tint:  # white stays the class colour at full ink, black stays black
        colour = np.array(TINTS[label % len(TINTS)], dtype=np.float32) / 255.0
        rgb = pixels[:, :, None].astype(np.float32) * colour
        image = Image.fromarray(np.rint(rgb).astype(np.uint8), mode="RGB")
    else:
        image = Image.fromarray(pixels, mode="L")
    if size is not None and size != image.width:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def check_out(out: Path, overwrite: bool = False) -> None:
    """Refuse, in one GanError, an OUT that is a file, cannot be written, or already holds
    something (unless ``overwrite``): its images would be replaced without a word."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GanError(f"{out}: exists and is not a folder; name a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GanError(f"{out}: holds {sum(1 for _ in out.iterdir())} entries already; name a "
                       "new or empty folder, or pass --overwrite to write over its images")
    io.check_writable(out, parents=False)  # OUT is made, the folders above it are the user's


def export(out: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], n: int,
           class_folders: bool, tint: bool, size: int | None, overwrite: bool = False) -> int:
    """Write the first ``n`` images as PNGs into ``out`` (new or empty unless
    ``overwrite``); returns how many."""
    if n < 1:
        raise GanError(f"--n: got {n}, must be at least 1")
    check_out(out, overwrite)
    n = min(n, images.shape[0])
    width = max(5, math.ceil(math.log10(n + 1)))
    out = Path(out)
    for i in range(n):
        label = int(labels[i])
        # Class names hold '/' (T-shirt/top): folder names use '-' instead.
        folder = out / classes[label].replace("/", "-") if class_folders else out
        path = folder / f"{i:0{width}d}.png"
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise io.write_error(folder, exc) from None
        image = to_image(images[i], label, tint, size)
        io.write_atomic(path, lambda handle, image=image: image.save(handle, format="PNG"),
                        parents=False)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gan.export_folder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder to write the PNGs into")
    p.add_argument("--dataset", default="fashion_mnist", choices=tuple(data.DATASETS))
    p.add_argument("--source", default=None, help="folder of the raw IDX files (.gz or not); "
                   "default: the download stage's mirrors")
    p.add_argument("--split", default="train", choices=data.SPLITS)
    p.add_argument("--n", type=int, default=3000, help="images to write (the split's first)")
    p.add_argument("--classes", action="store_true", help="one subfolder per class")
    p.add_argument("--tint", action="store_true", help="colour each class (RGB PNGs)")
    p.add_argument("--size", type=int, default=None, help="pixels per side (default: as is)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a folder that holds files already (default: refuse)")
    args = p.parse_args(argv)
    try:
        if args.size is not None and not 8 <= args.size <= 256:
            raise GanError(f"--size: got {args.size}, allowed: 8 to 256")
        check_out(args.out, args.overwrite)  # before the split is read
        images, labels, classes = read_split(args.dataset, args.source, args.split)
        count = export(args.out, images, labels, classes, args.n, args.classes, args.tint,
                       args.size, args.overwrite)
    except GanError as exc:
        if os.environ.get("GAN_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"export_folder: {count} {args.split} images of {args.dataset} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
