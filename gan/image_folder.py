"""The user's own images: a folder of PNG/JPEG files, class subfolders giving labels.

``download`` copies the images into the raw folder with a manifest of their SHA-256, so
DVC tracks their content; ``prepare`` decodes, sizes and splits them deterministically.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gan.config import GanError

EXTENSIONS = (".png", ".jpg", ".jpeg")
MANIFEST = "manifest.json"
IMAGES = "images"  # the raw folder's copy of the user's folder
TEST_EVERY = 10  # one image in this many per class goes to the test split
GRAY_BANDS = {("1",), ("L",), ("L", "A"), ("I",), ("I;16",), ("F",)}


def _visible(path: Path, root: Path) -> bool:
    # Dot files and folders (.DS_Store, .git, editors' temporaries) are never data.
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _files(folder: Path) -> list[Path]:
    """Every visible file under ``folder``, sorted, or one GanError for a name or a link
    that cannot be data here.

    A name must be UTF-8 (it is written to the manifest and hashed for the split). A link
    to a file inside the folder is followed; a link that leaves the folder, points to a
    folder (a class folder must be a real one), or leads nowhere (broken, or a loop) is
    refused: followed, it would copy files the folder does not hold into the project.
    """
    root = folder.resolve()
    files = []
    for path in folder.rglob("*"):
        if not _visible(path, folder):
            continue
        rel = path.relative_to(folder).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise GanError(f"data.path: {ascii(rel)}: a file name that is not UTF-8; rename "
                           f"it") from None
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                raise GanError(f"{path}: a link that leads nowhere (broken, or a loop); "
                               f"remove it") from None
            if target.is_dir():
                raise GanError(f"{path}: a link to a folder; put the images in a real folder "
                               f"(links are followed only to files inside data.path)")
            if not target.is_relative_to(root):
                raise GanError(f"{path}: a link to {target}, outside data.path; copy the "
                               f"file in instead")
        if path.is_file():
            files.append(path)
    return sorted(files)


def scan(folder: Path) -> tuple[list[str], dict[str, list[Path]], list[Path]]:
    """(class names, {class: image paths}, skipped non-image files) of ``folder``.

    Immediate subfolders holding images are the classes (sorted by name); a folder without
    any is a single class named after the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GanError(f"data.path: folder {str(folder)!r} does not exist")
    files = _files(folder)
    images = [p for p in files if p.suffix.lower() in EXTENSIONS]
    skipped = [p for p in files if p.suffix.lower() not in EXTENSIONS]
    if not images:
        raise GanError(f"data.path: no PNG or JPEG images in {str(folder)!r}")
    nested = [p for p in images if len(p.relative_to(folder).parts) > 1]
    if not nested:
        name = folder.resolve().name or "images"
        return [name], {name: images}, skipped
    loose = [p for p in images if len(p.relative_to(folder).parts) == 1]
    if loose:
        raise GanError(f"data.path: {loose[0]}: an image beside class subfolders; move it "
                       f"into a class folder")
    by_class: dict[str, list[Path]] = {}
    for path in images:
        by_class.setdefault(path.relative_to(folder).parts[0], []).append(path)
    classes = sorted(by_class)
    return classes, {name: by_class[name] for name in classes}, skipped


def _open(path: Path) -> Image.Image:
    """The decoded image at ``path``, or one GanError naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except Image.DecompressionBombError:
        raise GanError(f"{path}: over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, which Pillow "
                       f"refuses to decode (a decompression bomb?); shrink it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise GanError(f"{path}: not a readable PNG/JPEG image ({type(exc).__name__}: "
                       f"{exc})") from None


def _convert(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` (L or RGB), 16-bit grayscale scaled to 8 bits.

    Pillow opens a 16-bit grayscale PNG in mode I;16 (or I), and its convert("L") clips
    every value above 255 to white: mid-grey 32768 became 255. Scaled instead, v -> v *
    255 / 65535 rounded (32768 -> 128, 65535 -> 255). 16-bit RGB PNGs open as 8-bit RGB.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image, dtype=np.int64)
        if wide.min() < 0 or wide.max() > 65535:
            raise GanError(f"{getattr(image, 'filename', 'an image')}: integer pixels outside "
                           f"0 to 65535; save it as an 8- or 16-bit PNG")
        image = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    return image.convert(mode)


def download(folder: str | None, out_dir: Path) -> dict[str, str]:
    """Copy the images of ``folder`` into ``out_dir``/images with a SHA-256 manifest.

    Every image is decoded once first, so a corrupt file fails here, naming it, and leaves
    ``out_dir`` as it was. Non-image files are skipped with one warning. Returns
    {relative path: source path}.
    """
    if folder is None:
        raise GanError("data.path: missing; data.dataset: image_folder reads the folder it "
                       "names")
    folder = Path(folder)
    classes, by_class, skipped = scan(folder)
    if skipped:
        names = ", ".join(str(p.relative_to(folder)) for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"data.path: skipped {len(skipped)} files that are not PNG/JPEG: "
                      f"{names}{more}", stacklevel=2)
    sources: dict[str, str] = {}
    manifest: dict[str, dict] = {"classes": classes, "files": {}}
    out_dir = Path(out_dir)
    staged = out_dir.parent / f".{out_dir.name}.staged"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if staged.exists():
        shutil.rmtree(staged)
    try:
        for name, paths in by_class.items():
            for path in paths:
                _open(path)
                rel = path.relative_to(folder).as_posix()
                blob = path.read_bytes()
                target = staged / IMAGES / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
                manifest["files"][rel] = {"class": name,
                                          "sha256": hashlib.sha256(blob).hexdigest()}
                sources[rel] = str(path)
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    finally:
        if staged.exists():
            shutil.rmtree(staged)
    return sources


def _is_gray(image: Image.Image) -> bool:
    return image.getbands() in GRAY_BANDS


def _test_share(paths: list[str]) -> set[str]:
    """The test images of one class: the first 1 in TEST_EVERY by the hash of their name."""
    if len(paths) < 2:
        return set()  # a lone image trains
    ranked = sorted(paths, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    return set(ranked[:max(1, len(paths) // TEST_EVERY)])


def load(raw_dir: Path, image_size: int, channels: int | None
         ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], int]:
    """({split: (uint8 (N, S, S[, 3]), int64 labels (N,))}, classes, channels) from raw_dir."""
    raw_dir = Path(raw_dir)
    manifest_path = raw_dir / MANIFEST
    if not manifest_path.is_file():
        raise GanError(f"{manifest_path}: missing; run the download stage (dvc repro download)")
    manifest = json.loads(manifest_path.read_text())
    classes: list[str] = manifest["classes"]
    entries: dict[str, dict] = manifest["files"]
    paths = {rel: raw_dir / IMAGES / rel for rel in sorted(entries)}
    gray = 0
    for rel, path in paths.items():
        if not path.is_file():
            raise GanError(f"{path}: missing; run the download stage (dvc repro download)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != entries[rel]["sha256"]:
            raise GanError(f"{path}: SHA-256 differs from {MANIFEST}; run the download stage "
                           f"(dvc repro download)")
        try:
            with Image.open(path) as image:  # reads the header only
                gray += _is_gray(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise GanError(f"{path}: not a readable PNG/JPEG image ({exc})") from None
    if channels is None:  # the majority of the files; a tie goes to RGB, which loses nothing
        channels = 1 if 2 * gray > len(paths) else 3
    mode = {1: "L", 3: "RGB"}[channels]
    test: set[str] = set()
    for name in classes:
        test |= _test_share([r for r in paths if entries[r]["class"] == name])
    if not test:
        raise GanError("data.path: no class has 2 images or more, so none is left for the "
                       "test split")
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []),
                                                             "test": ([], [])}
    for rel, path in paths.items():
        # Crop the centre to a square, then resize, as torchvision's Resize + CenterCrop.
        image = ImageOps.fit(_convert(_open(path), mode), (image_size, image_size),
                             Image.Resampling.LANCZOS)
        arrays, labels = splits["test" if rel in test else "train"]
        arrays.append(np.asarray(image, dtype=np.uint8))
        labels.append(index[entries[rel]["class"]])
    out = {split: (np.stack(arrays), np.array(labels, dtype=np.int64))
           for split, (arrays, labels) in splits.items()}
    return out, classes, channels


def image_paths(folder: Path) -> list[Path]:
    """Every PNG/JPEG anywhere under ``folder``, sorted, or one GanError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GanError(f"{folder}: not a folder of images")
    paths = [p for p in _files(folder) if p.suffix.lower() in EXTENSIONS]
    if not paths:
        raise GanError(f"{folder}: no PNG or JPEG images in it")
    return paths


def read_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """uint8 (S, S[, 3]) of one image, converted to ``channels`` and fitted to
    ``image_size`` as ``load`` does."""
    image = _convert(_open(path), {1: "L", 3: "RGB"}[channels])
    if image.size != (image_size, image_size):  # samples of the judge's size stay as is
        image = ImageOps.fit(image, (image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def read_images(folder: Path, image_size: int, channels: int) -> tuple[np.ndarray, list[Path]]:
    """(uint8 (N, S, S[, 3]), their paths) of every PNG/JPEG anywhere under ``folder``
    (``image_paths``, ``read_image``)."""
    paths = image_paths(folder)
    return np.stack([read_image(path, image_size, channels) for path in paths]), paths
