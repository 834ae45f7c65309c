"""The user's own images: a folder of PNG/JPEG files, class subfolders giving labels.

``download`` copies the images into the raw folder with a manifest of their SHA-256, so
DVC tracks their content; ``prepare`` decodes, sizes and splits them deterministically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageColor, ImageOps, UnidentifiedImageError

from gan import io
from gan.errors import ConfigError, GanError, GanWarning
from gan.sections.data import DataConfig

EXTENSIONS = (".png", ".jpg", ".jpeg")
MANIFEST = "manifest.json"
IMAGES = "images"  # the raw folder's copy of the user's folder
TEST_EVERY = 10  # one image in this many per class goes to the test split
GRAY_BANDS = {("1",), ("L",), ("L", "A"), ("I",), ("I;16",), ("F",)}
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # a palette or gray image may instead name
# one transparent colour (info["transparency"])
OPAQUE = (255, 255)  # the alpha range (lowest, highest) of an image without transparency
MIN_SIDE = 8  # px: images with a smaller side are warned about (scaled up, they are flat blocks)
# data.background's functional notations, whose numbers Pillow would clamp without a word
_COLOUR_FUNCTION = re.compile(r"\s*(rgba?|hsla?|hsv|hsb)\s*\((.*)\)\s*", re.IGNORECASE)


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


@contextlib.contextmanager
def _pillow_warnings(path: Path) -> Iterator[None]:
    """Pillow's own warnings while decoding ``path``, said again as one GanWarning line each
    naming the file (raw, they carry Pillow's source location in the virtual environment)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        if issubclass(item.category, GanWarning):  # said already, by an inner _open
            warnings.warn(item.message, stacklevel=3)
        else:
            warnings.warn(f"{path}: {item.message} (Pillow)", GanWarning, stacklevel=3)


def _open(path: Path) -> Image.Image:
    """The decoded image at ``path`` as a viewer shows it (turned as its EXIF orientation
    says: a phone's photo is stored sideways), or one GanError naming the file."""
    try:
        with _pillow_warnings(path), Image.open(path) as image:
            image.load()
            if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
                return ImageOps.exif_transpose(image)
            return image
    except Image.DecompressionBombError:
        raise GanError(f"{path}: over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, which Pillow "
                       f"refuses to decode (a decompression bomb?); shrink it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise GanError(f"{path}: not a readable PNG/JPEG image ({type(exc).__name__}: "
                       f"{exc})") from None


def background_rgb(colour: str) -> tuple[int, int, int]:
    """data.background as (R, G, B): a colour name Pillow knows, #rrggbb, or rgb(), hsl() or
    hsv() with every number in range (Pillow would clamp rgb(300,0,0) to 255 silently)."""
    allowed = "a colour name (white, black, gray, ...), #rrggbb or rgb(R, G, B) of 0 to 255"
    match = _COLOUR_FUNCTION.fullmatch(colour) if isinstance(colour, str) else None
    if match is not None:
        hue_first = match.group(1).lower().startswith("h")
        for i, part in enumerate(p.strip() for p in match.group(2).split(",")):
            percent = part.endswith("%")
            limit = 100 if percent or (hue_first and i > 0) else 360 if hue_first else 255
            try:
                value = float(part.removesuffix("%"))
            except ValueError:
                break  # not a number: Pillow refuses it below
            if not 0 <= value <= limit:
                raise ConfigError(f"data.background: got {colour!r}: {part} is out of range "
                                  f"(0 to {limit}{'%' if limit == 100 else ''}); allowed: "
                                  f"{allowed}")
    try:
        return ImageColor.getrgb(colour)[:3]
    except (ValueError, AttributeError):
        raise ConfigError(f"data.background: got {colour!r}, allowed: {allowed}") from None


def _is_transparent(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def _flatten(image: Image.Image, background: tuple[int, int, int]
             ) -> tuple[Image.Image, tuple[int, int]]:
    """(``image`` composited onto ``background`` if it has an alpha channel or a transparent
    colour, the (lowest, highest) alpha of its pixels). Images without either come back as
    they are, with OPAQUE.

    convert("RGB") drops alpha: an icon's transparent pixels hold whatever colour was
    saved under them, often black, so dark glyphs on them became black squares.
    """
    if not _is_transparent(image):
        return image, OPAQUE
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    flat = Image.new("RGBA", rgba.size, (*background, 255))
    flat.alpha_composite(rgba)
    return flat.convert("RGB"), alpha.getextrema()


def _convert(image: Image.Image, mode: str, background: tuple[int, int, int]
             ) -> tuple[Image.Image, tuple[int, int]]:
    """(``image`` in ``mode`` (L or RGB), its alpha range (_flatten)), 16-bit grayscale
    scaled to 8 bits and transparent pixels composited onto ``background``.

    Pillow opens a 16-bit grayscale PNG in mode I;16 (or I), and its convert("L") clips
    every value above 255 to white: mid-grey 32768 became 255. Scaled instead, v -> v *
    255 / 65535 rounded (32768 -> 128, 65535 -> 255). 16-bit RGB(A) PNGs open as 8-bit.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image, dtype=np.int64)
        if wide.min() < 0 or wide.max() > 65535:
            raise GanError(f"{getattr(image, 'filename', 'an image')}: integer pixels outside "
                           f"0 to 65535; save it as an 8- or 16-bit PNG")
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        key = image.info.get("transparency")  # a 16-bit gray value, matched before scaling
        if isinstance(key, int):
            alpha = np.where(wide == key, 0, 255).astype(np.uint8)
            image = Image.fromarray(np.stack([gray, alpha], axis=-1), mode="LA")
        else:
            image = Image.fromarray(gray, mode="L")
    image, alpha = _flatten(image, background)
    return image.convert(mode), alpha


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
                      f"{names}{more}", GanWarning, stacklevel=2)
    sources: dict[str, str] = {}
    manifest: dict[str, dict] = {"classes": classes, "files": {}}
    out_dir = Path(out_dir)
    # Staged in a folder of this process's own (gan.io.staging_dir), never under a name a
    # user's folder could have.
    with io.staging_dir(out_dir, "download") as tmp:
        staged = tmp / "staged"
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
    return sources


def _is_gray(image: Image.Image) -> bool:
    return image.getbands() in GRAY_BANDS


def _name_rank(rel: str) -> str:
    return hashlib.sha256(rel.encode()).hexdigest()


def _test_share(classes: list[str], entries: dict[str, dict], digests: dict[str, str]
                ) -> set[str]:
    """The test images: per class, 1 in TEST_EVERY (at least one of 2 or more), taken in the
    order of the hash of their names, each with every exact copy of it (``digests``: the
    prepared pixels' hash), so that no image is in both splits; a class keeps at least one
    training image. Without copies: the first len // TEST_EVERY names of each class."""
    copies: dict[str, list[str]] = {}
    for rel, digest in digests.items():
        copies.setdefault(digest, []).append(rel)
    test: set[str] = set()
    for name in classes:
        paths = [rel for rel in digests if entries[rel]["class"] == name]
        if len(paths) < 2:
            continue  # a lone image trains
        want = max(1, len(paths) // TEST_EVERY)
        taken = sum(rel in test for rel in paths)  # copies another class already took
        for rel in sorted(paths, key=_name_rank):
            if taken >= want:
                break
            group = copies[digests[rel]]
            mine = sum(entries[g]["class"] == name and g not in test for g in group)
            if rel in test or taken + mine >= len(paths):
                continue
            test.update(group)
            taken += mine
    return test


def _read_manifest(raw_dir: Path) -> tuple[list[str], dict[str, dict], dict[str, Path]]:
    """(classes, {relative path: entry}, {relative path: raw file}), each file checked
    against its SHA-256."""
    manifest_path = raw_dir / MANIFEST
    if not manifest_path.is_file():
        raise GanError(f"{manifest_path}: missing; run the download stage (dvc repro download)")
    manifest = json.loads(manifest_path.read_text())
    entries: dict[str, dict] = manifest["files"]
    paths = {rel: raw_dir / IMAGES / rel for rel in sorted(entries)}
    for rel, path in paths.items():
        if not path.is_file():
            raise GanError(f"{path}: missing; run the download stage (dvc repro download)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != entries[rel]["sha256"]:
            raise GanError(f"{path}: SHA-256 differs from {MANIFEST}; run the download stage "
                           f"(dvc repro download)")
    return manifest["classes"], entries, paths


def _majority_channels(paths: list[Path]) -> int:
    """1 when most files are grayscale, else 3 (a tie goes to RGB, which loses nothing)."""
    gray = 0
    for path in paths:
        try:
            with Image.open(path) as image:  # reads the header only
                gray += _is_gray(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise GanError(f"{path}: not a readable PNG/JPEG image ({exc})") from None
    return 1 if 2 * gray > len(paths) else 3


def _fitted(path: Path, mode: str, image_size: int, background: tuple[int, int, int],
            keep_size: bool = False) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(uint8 (S, S[, 3]) of the file at ``path``, its alpha range (_flatten), its size as
    shown (width, height)):
    composited onto ``background`` before any resizing, then the centre cropped to a square
    and resized, as torchvision's Resize + CenterCrop; ``keep_size`` leaves an image of
    ``image_size`` px as it is."""
    with _pillow_warnings(path):
        image, alpha = _convert(_open(path), mode, background)
        size = image.size
        if not (keep_size and image.size == (image_size, image_size)):
            image = ImageOps.fit(image, (image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8), alpha, size


def load(raw_dir: Path, image_size: int, channels: int | None,
         background: str = DataConfig.background
         ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], int, int]:
    """({split: (uint8 (N, S, S[, 3]), int64 labels (N,))}, classes, channels, how many
    images had transparency) from raw_dir, transparent pixels on ``background``."""
    classes, entries, paths = _read_manifest(Path(raw_dir))
    if channels is None:
        channels = _majority_channels(list(paths.values()))
    mode = {1: "L", 3: "RGB"}[channels]
    rgb = background_rgb(background)
    pixels, digests, transparent, blank, tiny = {}, {}, 0, 0, []
    for rel, path in paths.items():
        pixels[rel], alpha, size = _fitted(path, mode, image_size, rgb)
        digests[rel] = hashlib.sha256(pixels[rel].tobytes()).hexdigest()
        transparent += alpha[0] < 255
        blank += alpha[1] == 0  # no pixel shows: the image is data.background alone
        if min(size) < min(MIN_SIDE, image_size):  # scaled up from under 8 px
            tiny.append((rel, size))
    if tiny:
        rel, (width, height) = min(tiny, key=lambda item: min(item[1]))
        warnings.warn(f"data.path: {len(tiny)} of {len(paths)} images are under {MIN_SIDE} px "
                      f"a side (smallest: {rel}, {width} x {height}); scaled up to {image_size} "
                      f"px they are flat blocks, not pictures", GanWarning, stacklevel=2)
    if blank == len(paths):
        raise GanError(f"data.path: all {len(paths)} images are fully transparent (alpha 0 "
                       f"everywhere): each is data.background alone, nothing to learn; save "
                       f"them with their alpha channel intact")
    test = _test_share(classes, entries, digests)
    if not test:
        blanks = f" ({blank} of them fully transparent)" if blank else ""
        raise GanError(f"data.path: no class has 2 distinct images or more{blanks}, so none is "
                       "left for the test split")
    index = {name: i for i, name in enumerate(classes)}
    out = {}
    for split in ("train", "test"):
        rels = [rel for rel in paths if (rel in test) == (split == "test")]
        out[split] = (np.stack([pixels[rel] for rel in rels]),
                      np.array([index[entries[rel]["class"]] for rel in rels], dtype=np.int64))
    return out, classes, channels, transparent


def image_paths(folder: Path) -> list[Path]:
    """Every PNG/JPEG anywhere under ``folder``, sorted, or one GanError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GanError(f"{folder}: not a folder of images")
    paths = [p for p in _files(folder) if p.suffix.lower() in EXTENSIONS]
    if not paths:
        raise GanError(f"{folder}: no PNG or JPEG images in it")
    return paths


def read_image(path: Path, image_size: int, channels: int,
               background: str = DataConfig.background) -> np.ndarray:
    """uint8 (S, S[, 3]) of one image, converted to ``channels``, transparent pixels on
    ``background``, fitted to ``image_size`` as ``load`` does; samples of the judge's size
    stay as they are."""
    mode = {1: "L", 3: "RGB"}[channels]
    return _fitted(path, mode, image_size, background_rgb(background), keep_size=True)[0]


def read_images(folder: Path, image_size: int, channels: int,
                background: str = DataConfig.background) -> tuple[np.ndarray, list[Path]]:
    """(uint8 (N, S, S[, 3]), their paths) of every PNG/JPEG anywhere under ``folder``
    (``image_paths``, ``read_image``)."""
    paths = image_paths(folder)
    return np.stack([read_image(path, image_size, channels, background)
                     for path in paths]), paths
