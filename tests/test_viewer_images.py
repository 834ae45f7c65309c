"""Images of a folder as a viewer shows them: turned by their EXIF orientation, on a
background colour that is really a colour, with a word for what cannot be a picture."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from gan import data, image_folder, preflight
from gan.errors import ConfigError, GanError, GanWarning

from conftest import ROOT

ORIENTATION = 0x0112  # the EXIF tag


def half_black(width: int = 16, height: int = 8) -> Image.Image:
    """Left half black, right half white."""
    pixels = np.full((height, width), 255, dtype=np.uint8)
    pixels[:, : width // 2] = 0
    return Image.fromarray(pixels, mode="L")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_exif_orientation_is_applied_as_a_viewer_does(tmp_path, fmt):
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # shown turned 90 degrees clockwise: the left half on top
    path = tmp_path / f"photo.{fmt.lower()}"
    half_black().save(path, format=fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    pixels = image_folder.read_image(path, 8, 1).astype(float)  # (8, 8): the centre square
    assert pixels[0].mean() < 40 and pixels[-1].mean() > 215  # black on top, white below
    plain = tmp_path / f"plain.{fmt.lower()}"
    half_black().save(plain, format=fmt)
    stored = image_folder.read_image(plain, 8, 1).astype(float)
    assert stored[:, 0].mean() < 40 and stored[:, -1].mean() > 215  # as stored: left black


@pytest.mark.parametrize("colour", ["rgb(300,0,0)", "rgb(0, 0, 256)", "rgba(0,0,0,300)",
                                    "rgb(101%,0%,0%)", "hsl(400,50%,50%)",
                                    "hsl(120,150%,50%)", "hsv(0,0%,101%)"])
def test_an_out_of_range_background_is_refused_in_one_line(colour):
    with pytest.raises(ConfigError) as caught:
        image_folder.background_rgb(colour)
    message = str(caught.value)
    assert message.startswith(f"data.background: got {colour!r}: ") and "out of range" in message
    assert "\n" not in message
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["background"] = colour
    with pytest.raises(ConfigError, match=r"^data\.background: "):
        preflight.check_params(params)  # as the first stage checks params.yaml


@pytest.mark.parametrize("colour,rgb", [("rgb(255,0,0)", (255, 0, 0)), ("white", (255,) * 3),
                                        ("#00ff00", (0, 255, 0)),
                                        ("rgb(100%, 0%, 0%)", (255, 0, 0)),
                                        ("hsl(240, 100%, 50%)", (0, 0, 255))])
def test_a_background_in_range_is_read(colour, rgb):
    assert image_folder.background_rgb(colour) == rgb


def class_folder(root: Path, images: dict[str, Image.Image]) -> Path:
    for name, image in images.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return root


def loaded(folder: Path, tmp_path: Path, size: int = 8):
    data.download("image_folder", tmp_path / "raw", path=str(folder))
    return image_folder.load(tmp_path / "raw", size, None)


def test_images_under_8_px_a_side_are_warned_in_one_line(tmp_path):
    images = {f"{c}/{i:02d}.png": Image.new("L", (1, 1), 10 * i + 100 * c)
              for c in range(2) for i in range(10)}
    images["0/big.png"] = Image.new("L", (12, 12), 77)
    folder = class_folder(tmp_path / "tiny", images)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded(folder, tmp_path)
    said = [str(w.message) for w in caught if issubclass(w.category, GanWarning)
            and "px a side" in str(w.message)]
    assert said == ["data.path: 20 of 21 images are under 8 px a side (smallest: 0/00.png, "
                    "1 x 1); scaled up to 8 px they are flat blocks, not pictures"]


def test_an_all_transparent_folder_is_named_as_such(tmp_path):
    images = {f"{c}/{i:02d}.png": Image.new("RGBA", (8, 8), (i * 20, c * 100, 7, 0))
              for c in range(2) for i in range(10)}  # other colours, none of them shown
    folder = class_folder(tmp_path / "clear", images)
    with pytest.raises(GanError) as caught:
        loaded(folder, tmp_path)
    assert str(caught.value) == ("data.path: all 20 images are fully transparent (alpha 0 "
                                 "everywhere): each is data.background alone, nothing to learn; "
                                 "save them with their alpha channel intact")
