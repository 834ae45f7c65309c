"""Datasets: registry, download from a local mirror or the internet, checksums, prepare.

``image_folder`` (the user's own images, ``data.path``) is handled by gan.image_folder.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gan import image_folder
from gan.errors import ConfigError, GanError, GanWarning
from gan.io import check_integrity, staging_dir
from gan.sections import choose
from gan.sections.data import DataConfig

SPLITS = ("train", "test")
IMAGE_FOLDER = "image_folder"
MIRROR_ENV = "GAN_DATA_MIRROR"
# A split whose pixels spread less than this (standard deviation, of 255) is refused: its
# images are one flat colour, nothing a GAN or its judge can learn from. Fashion-MNIST's
# spread is about 90; a 1-level dither on a flat colour is 0.5.
NEARLY_CONSTANT = 2.0
# Exact copies (the same prepared pixels) above this share of all images are warned of.
# Copies weigh twice in FID's statistics, and an image with k copies has a k-NN ball of
# radius 0, so precision, recall, density and coverage start to count copies, not images;
# a few stray doubles are what any collected folder holds (Fashion-MNIST has none).
DUPLICATE_SHARE = 0.05
# Fewer training images than this in a class are warned of: a class of 9 has at most 1
# test image (1 in 10 go there), and the judge has almost nothing to learn it from.
MIN_CLASS_TRAIN = 10
# The smallest test split the scores accept: gan.metrics.MIN_TEST (density and coverage
# need 5 neighbours per image); tests/test_image_folder.py holds the two together.
MIN_TEST = 6


@dataclass(frozen=True)
class RawFile:
    name: str  # decompressed IDX file name, as written to the raw folder
    size: int  # decompressed bytes
    sha256: str | None  # SHA-256 of the decompressed content, where it is known
    archive_md5: str  # MD5 of the upstream .gz archive (torchvision's resource table)


@dataclass(frozen=True)
class DatasetSpec:
    torchvision_class: str
    files: dict[str, RawFile]  # keys: train_images, train_labels, test_images, test_labels
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]  # local folders searched when no mirror is named


def _idx(prefix: str, sizes: tuple[int, int, int, int], sha: tuple, md5: tuple) -> dict:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    rows = zip(keys, names, sizes, sha, md5, strict=True)
    return {k: RawFile(prefix + n, s, h, m) for k, n, s, h, m in rows}


_MNIST_SIZES = (47040016, 60008, 7840016, 10008)

# Content hashes: Fashion-MNIST measured on Debian's dataset-fashion-mnist files; MNIST as
# published alongside many MNIST loaders (and matching the upstream archives). Archive MD5s
# are torchvision's. KMNIST's content hashes are not recorded yet: its files are checked by
# their upstream archive MD5 and exact size instead.
DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        "FashionMNIST",
        _idx("", _MNIST_SIZES,
             ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
              "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
              "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
              "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
             ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
              "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ("/usr/share/datasets/fashion-mnist",),
    ),
    "mnist": DatasetSpec(
        "MNIST",
        _idx("", _MNIST_SIZES,
             ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
              "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
             ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
              "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
        tuple(str(i) for i in range(10)),
        ("/usr/share/datasets/mnist",),
    ),
    "kmnist": DatasetSpec(
        "KMNIST",
        _idx("", _MNIST_SIZES, (None, None, None, None),
             ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
              "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        (),
    ),
}


# data.dataset: an IDX dataset above, or a folder of the user's own images.
DATASET_NAMES = (*DATASETS, IMAGE_FOLDER)


def dataset_spec(name: str) -> DatasetSpec:
    """The IDX dataset ``name`` (image_folder has no spec: its files are the user's)."""
    return choose(DATASETS, "data.dataset", name)


def check_channels(dataset: str, channels: int | None) -> None:
    if dataset != IMAGE_FOLDER and channels is not None:
        raise ConfigError(f"data.channels: got {channels}, but {dataset} is grayscale; set "
                          f"null (it applies to image_folder only)")


def check_config(cfg: DataConfig) -> None:
    """Refuse a data section that names no dataset of the registry or misses what it needs."""
    choose(dict.fromkeys(DATASET_NAMES), "data.dataset", cfg.dataset)
    if cfg.dataset == IMAGE_FOLDER and cfg.path is None:
        raise ConfigError("data.path: missing; data.dataset: image_folder reads the folder it "
                          "names")
    check_channels(cfg.dataset, cfg.channels)
    image_folder.background_rgb(cfg.background)  # refused even where the IDX data ignore it


def _read_candidate(folder: Path, raw: RawFile) -> tuple[bytes, str | None, Path] | None:
    """(decompressed bytes, archive MD5 or None, path) of ``raw`` in ``folder``, if present."""
    for candidate in (folder / (raw.name + ".gz"), folder / raw.name):
        if candidate.is_file():
            blob = candidate.read_bytes()
            if candidate.suffix == ".gz":
                try:
                    return gzip.decompress(blob), hashlib.md5(blob).hexdigest(), candidate
                except (OSError, EOFError) as exc:
                    raise GanError(f"{candidate}: not a readable gzip file ({exc})") from None
            return blob, None, candidate
    return None


def verify(raw: RawFile, content: bytes, archive_md5: str | None, source: Path) -> None:
    """Raise GanError naming ``source`` unless ``content`` is the expected file."""
    if len(content) != raw.size:
        raise GanError(f"{source}: {len(content)} bytes after decompression, expected "
                       f"{raw.size} (truncated or wrong file)")
    if raw.sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != raw.sha256:
            raise GanError(f"{source}: SHA-256 of the content is {digest[:16]}..., expected "
                           f"{raw.sha256[:16]}... (corrupt or wrong file)")
    elif archive_md5 != raw.archive_md5:
        raise GanError(f"{source}: no content hash is recorded for this file, so only the "
                       f"upstream .gz archive (MD5 {raw.archive_md5}) is accepted")


def find_mirror(dataset: str, mirror: str | None) -> Path | None:
    """The folder to copy raw files from: the named one, $GAN_DATA_MIRROR, or a known one."""
    if mirror is not None:
        path = Path(mirror)
        if not path.is_dir():
            raise GanError(f"data.mirror: folder {mirror!r} does not exist")
        return path
    env = os.environ.get(MIRROR_ENV)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise GanError(f"{MIRROR_ENV}: folder {env!r} does not exist")
        return path
    for folder in dataset_spec(dataset).mirrors:
        if Path(folder).is_dir():
            return Path(folder)
    return None


def _download_torchvision(dataset: str, workdir: Path) -> Path:
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset_spec(dataset).torchvision_class)
    try:
        cls(root=str(workdir), train=True, download=True)
        cls(root=str(workdir), train=False, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError
        raise GanError(f"data.dataset: could not download {dataset} through torchvision "
                       f"({type(exc).__name__}: {exc}); name a local copy with data.mirror "
                       f"or ${MIRROR_ENV}") from None
    return workdir / dataset_spec(dataset).torchvision_class / "raw"


def download(dataset: str, out_dir: Path, mirror: str | None = None,
             path: str | None = None) -> dict[str, str]:
    """Write the verified, decompressed raw files of ``dataset`` to ``out_dir``.

    All files are verified before ``out_dir`` is replaced, so a failure leaves no output.
    ``path`` is image_folder's folder (data.path); ``mirror`` serves the IDX datasets.
    Returns {file name: where it came from}.
    """
    if dataset == IMAGE_FOLDER:
        return image_folder.download(path, out_dir)
    spec = dataset_spec(dataset)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    sources: dict[str, str] = {}
    with staging_dir(out_dir, "download") as tmp:
        source = find_mirror(dataset, mirror)
        if source is None:
            source = _download_torchvision(dataset, tmp / "torchvision")
        staged = tmp / "staged"
        staged.mkdir()
        for raw in spec.files.values():
            found = _read_candidate(source, raw)
            if found is None:
                raise GanError(f"{source / raw.name}: missing (neither {raw.name} nor "
                               f"{raw.name}.gz is there)")
            content, md5, path = found
            verify(raw, content, md5, path)
            (staged / raw.name).write_bytes(content)
            sources[raw.name] = str(path)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    return sources


def _parse_idx(blob: bytes, source: Path) -> np.ndarray:
    # IDX: 2 zero bytes, a type code (0x08 = uint8), the number of dims, then big-endian sizes.
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] != 0x08:
        raise GanError(f"{source}: not an unsigned-byte IDX file")
    ndim = blob[3]
    dims = np.frombuffer(blob, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise GanError(f"{source}: header says {tuple(dims)} but holds {data.size} values")
    return data.reshape(tuple(dims))


def load_raw(dataset: str, raw_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 images (N, H, W), int64 labels (N,))} from verified raw files."""
    spec = dataset_spec(dataset)
    raw_dir = Path(raw_dir)
    arrays = {}
    for key, raw in spec.files.items():
        path = raw_dir / raw.name
        if not path.is_file():
            raise GanError(f"{path}: missing; run the download stage (dvc repro download)")
        content = path.read_bytes()
        verify(raw, content, None if raw.sha256 else raw.archive_md5, path)
        arrays[key] = _parse_idx(content, path)
    return {
        split: (arrays[f"{split}_images"], arrays[f"{split}_labels"].astype(np.int64))
        for split in SPLITS
    }


def to_unit_range(images: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W[, C]) -> float32 (N, C, S, S) in [-1, 1].

    Sizes up to 4 px per side larger than the source are reached by padding with the
    background value (-1), as for the 32 px DCGAN; other sizes by antialiased bilinear resize.
    """
    x = torch.from_numpy(np.array(images, dtype=np.uint8))  # a writable copy
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = x.float().div_(127.5).sub_(1.0)  # (N, C, H, W) in [-1, 1]
    height = x.shape[-1]
    if image_size != height:
        grow = image_size - height
        if 0 < grow <= 8 and grow % 2 == 0:
            x = F.pad(x, (grow // 2,) * 4, value=-1.0)
        else:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                              antialias=True, align_corners=False).clamp_(-1.0, 1.0)
    return x.contiguous()


def _save_split(split: dict, path: Path) -> None:
    """``torch.save`` to ``path`` (saved by name: the name is in the file's bytes), with a
    full disk raised as the ENOSPC it is rather than torch's RuntimeError."""
    try:
        torch.save(split, path)
    except RuntimeError:
        if shutil.disk_usage(path.parent).free < split["images"].nbytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise


def duplicates(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, int]:
    """Exact copies (the same pixels) among uint8 images: {split: images that copy an earlier
    one of that split, "across": test images with a copy among the training images}."""
    def digests(images: np.ndarray) -> list[bytes]:
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in images]

    seen = {split: digests(images) for split, (images, _) in splits.items()}
    counts = {split: len(d) - len(set(d)) for split, d in seen.items()}
    train = set(seen["train"])
    counts["across"] = sum(d in train for d in seen["test"])
    return counts


def check_splits(splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str],
                 where: str) -> dict[str, int]:
    """Refuse a (nearly) constant split; warn of copies above DUPLICATE_SHARE, of a class
    with no test image or under MIN_CLASS_TRAIN training images, and of a test split under
    MIN_TEST. Returns ``duplicates(splits)``. ``where``: the key or file to name."""
    for split, (images, _) in splits.items():
        spread = float(images.std(dtype=np.float64)) if images.shape[0] > 1 else math.inf
        if spread < NEARLY_CONSTANT:
            raise GanError(f"{where}: the {images.shape[0]} {split} images are nearly one "
                           f"flat colour (pixel spread {spread:.2f} of 255, all about "
                           f"{float(images.mean()):.0f}); nothing can be learnt from them. "
                           f"Transparent images? They are put on data.background")
    copies = duplicates(splits)
    total = sum(images.shape[0] for images, _ in splits.values())
    extra = copies["train"] + copies["test"] + copies["across"]
    if extra > DUPLICATE_SHARE * total:
        warnings.warn(f"{where}: {extra} of the {total} images are exact copies of another "
                      f"({extra / total:.0%}, over {DUPLICATE_SHARE:.0%}); the scores count "
                      f"each copy again: remove them", GanWarning, stacklevel=2)
    if len(classes) > 1:
        counts = {split: np.bincount(labels, minlength=len(classes))
                  for split, (_, labels) in splits.items()}
        lacking = [f"{name!r}" for name, n in zip(classes, counts["test"], strict=True) if n == 0]
        if lacking:
            warnings.warn(f"{where}: classes {', '.join(lacking)} have no test image (a class "
                          f"needs 2 distinct images; 1 in 10 go to test): the scores cannot "
                          f"check them", GanWarning, stacklevel=2)
        few = [f"{name!r} ({n})" for name, n in zip(classes, counts["train"], strict=True)
               if n < MIN_CLASS_TRAIN]
        if few:
            warnings.warn(f"{where}: classes {', '.join(few)} have under {MIN_CLASS_TRAIN} "
                          f"training images: too few for the judge to learn them; add images "
                          f"or merge classes", GanWarning, stacklevel=2)
    n_test = splits["test"][0].shape[0]
    if n_test < MIN_TEST:
        warnings.warn(f"{where}: the test split holds {n_test} images; evaluate and gan-score "
                      f"need at least {MIN_TEST}: add images (1 in 10 per class go to test)",
                      GanWarning, stacklevel=2)
    return copies


def prepare(dataset: str, raw_dir: Path, out_dir: Path, image_size: int,
            channels: int | None = None, background: str = DataConfig.background) -> dict:
    """Write ``{split}.pt`` ({images, labels, classes}) to ``out_dir``; return data metrics.

    ``channels`` (data.channels) is image_folder's: 1 or 3, or None for the files' majority;
    so is ``background`` (data.background), the colour under transparent pixels.
    """
    transparent = 0
    if dataset == IMAGE_FOLDER:
        splits, classes, _, transparent = image_folder.load(raw_dir, image_size, channels,
                                                            background)
        where = "data.path"
    else:
        check_channels(dataset, channels)
        classes = list(dataset_spec(dataset).classes)
        splits = load_raw(dataset, raw_dir)
        where = f"data.dataset ({dataset})"
    copies = check_splits(splits, classes, where)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"dataset": dataset, "image_size": image_size, "classes": len(classes),
                     "duplicates": copies, "transparent": transparent}
    with staging_dir(out_dir, "prepare") as tmp:
        staged = tmp / "staged"
        staged.mkdir()
        for split, (images, labels) in splits.items():
            x = to_unit_range(images, image_size)
            _save_split({"images": x, "labels": torch.from_numpy(labels),
                         "classes": list(classes)}, staged / f"{split}.pt")
            metrics[split] = {
                "count": int(x.shape[0]),
                "channels": int(x.shape[1]),
                "min": round(float(x.min()), 6),
                "max": round(float(x.max()), 6),
                "mean": round(float(x.mean()), 6),
                "per_class": np.bincount(labels, minlength=len(classes)).tolist(),
            }
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    return metrics


def load_prepared(prepared_dir: Path, split: str) -> dict:
    """{images: float (N, C, S, S) in [-1, 1], labels: int64 (N,), classes: list[str]}."""
    path = Path(prepared_dir) / f"{split}.pt"
    if not path.is_file():
        raise GanError(f"{path}: missing; run the prepare stage (dvc repro prepare)")
    check_integrity(path, "prepared split")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GanError(f"{path}: unreadable prepared data ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not {"images", "labels", "classes"} <= set(data):
        raise GanError(f"{path}: not a prepared split (expected images, labels, classes)")
    images = data["images"]
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise GanError(f"{path}: images are not a float tensor; run the prepare stage again")
    if not bool(torch.isfinite(images).all()):
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise GanError(f"{path}: {bad} images hold NaN or infinite pixels; prepared data is "
                       f"in [-1, 1], run the prepare stage again")
    return data
