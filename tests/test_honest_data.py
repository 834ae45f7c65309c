"""Real folders, honest scores: transparency composited, degenerate data caught in prepare,
a judge at chance stopped, and scores no generator can cause flagged as the judge's.

Every folder here is made by the test, a few tiny PNGs; everything runs in this process
but the one download stage that shows a warning's line as a user sees it.
"""

from __future__ import annotations

import json
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan import classifier, data, image_folder, metrics
from gan.errors import ConfigError, GanError, GanWarning, one_line_warnings

from conftest import ROOT, run_stage, tiny_split

SIZE = 8
# Each test image: black everywhere, opaque only in the centre 4 x 4, so that what it shows
# is in its alpha channel alone (as a dark glyph on a transparent icon).
SHOWN = np.zeros((SIZE, SIZE), dtype=bool)
SHOWN[2:6, 2:6] = True


def _png(kind: int, depth: int, rows: list[bytes]) -> bytes:
    """A PNG of colour type ``kind`` and bit ``depth``, written byte by byte (Pillow writes
    no 16-bit image with alpha)."""
    def chunk(name: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + name + body
                + zlib.crc32(name + body).to_bytes(4, "big"))

    size = SIZE.to_bytes(4, "big")
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", size + size + bytes([depth, kind, 0, 0, 0]))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_transparent(folder: Path) -> list[str]:
    """One image of each way a PNG holds transparency, each a black square visible only
    through its alpha; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    alpha = np.where(SHOWN, 255, 0).astype(np.uint8)
    black = np.zeros((SIZE, SIZE), dtype=np.uint8)
    Image.fromarray(np.dstack([black, black, black, alpha]), "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.dstack([black, alpha]), "LA").save(folder / "la.png")
    # a palette with three alphas: Pillow keeps them as bytes, and its convert("RGB") warns
    palette = Image.fromarray(np.where(SHOWN, 1, 0).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 0, 0, 0, 0, 0, 0])
    palette.save(folder / "palette.png", transparency=bytes([0, 255, 128]))
    # grayscale whose colour 7 is transparent, 8 and 16 bits
    Image.fromarray(np.where(SHOWN, 0, 7).astype(np.uint8), "L").save(folder / "gray_key.png",
                                                                       transparency=7)
    Image.fromarray(np.where(SHOWN, 0, 700).astype(np.uint16)).save(folder / "gray16_key.png",
                                                                    transparency=700)
    a16 = np.where(SHOWN, 65535, 0).astype(">u2")
    zero = np.zeros_like(a16)
    (folder / "rgba16.png").write_bytes(_png(6, 16, [np.dstack([zero, zero, zero, a16])[y]
                                                     .tobytes() for y in range(SIZE)]))
    (folder / "la16.png").write_bytes(_png(4, 16, [np.dstack([zero, a16])[y].tobytes()
                                                   for y in range(SIZE)]))
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("channels", [1, 3])
def test_transparent_pngs_come_out_visible_on_the_background(tmp_path, channels):
    names = write_transparent(tmp_path / "icons")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, paths = image_folder.read_images(tmp_path / "icons", SIZE, channels)
    assert [p.name for p in paths] == names and len(names) == 7
    # Pillow's own warnings (the palette's "Transparency expressed in bytes") never reach
    # the user raw; here there is none at all
    assert [str(w.message) for w in caught if not issubclass(w.category, GanWarning)] == []
    for name, image in zip(names, images, strict=True):
        gray = image if channels == 1 else image[..., 0]
        # black glyph on white: before, convert("RGB") dropped alpha, all black
        assert (gray[SHOWN] == 0).all() and (gray[~SHOWN] == 255).all(), name


def test_background_is_a_key_and_prepare_counts_the_transparent_images(tmp_path):
    write_transparent(tmp_path / "icons" / "glyph")
    solid = tmp_path / "icons" / "solid"
    solid.mkdir()
    for i in range(9):  # opaque images of another class: not counted
        Image.new("RGB", (SIZE, SIZE), (20 * i, 100, 200)).save(solid / f"s{i}.png")
    data.download("image_folder", tmp_path / "raw", path=str(tmp_path / "icons"))
    with pytest.warns(GanWarning):  # a test split of 2, classes under 10 training images
        found = data.prepare("image_folder", tmp_path / "raw", tmp_path / "prep", SIZE, 3,
                             "#ff8000")
    assert found["transparent"] == 7
    every = torch.cat([data.load_prepared(tmp_path / "prep", s)["images"]
                       for s in ("train", "test")])
    orange = torch.tensor([255, 128, 0]) / 127.5 - 1
    corners = every[:, :, 0, 0]
    assert sum(torch.allclose(c, orange) for c in corners) == 7  # every glyph, on orange
    with pytest.raises(ConfigError, match=r"data.background: got 'mauvish', allowed: a colour"):
        image_folder.background_rgb("mauvish")


def test_pillow_warnings_are_said_as_one_line_naming_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(folder / "large.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 144 pixels: Pillow warns
    with pytest.warns(GanWarning, match=r"large.png: Image size \(144 pixels\) exceeds limit "
                                        r".*\(Pillow\)$"):
        image_folder.read_images(folder, 4, 3)


@pytest.mark.integration
def test_a_warning_is_one_line_without_python_source_location(tmp_path):
    folder = tmp_path / "pictures"
    write_transparent(folder)
    (folder / "notes.txt").write_text("not an image")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(dataset="image_folder", path=str(folder))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_stage("download", "--params", str(tmp_path / "params.yaml"), "--out",
                     str(tmp_path / "raw"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("warning: data.path: skipped 1 files that are not PNG/JPEG: "
                           "notes.txt\n")
    buffer = []

    class Out:
        def write(self, text: str) -> None:
            buffer.append(text)

    one_line_warnings()
    warnings.showwarning(GanWarning("data.path: x.png: said"), GanWarning, "gan/x.py", 9,
                         Out())
    assert "".join(buffer) == "warning: data.path: x.png: said\n"


# --- degenerate data, caught in prepare ------------------------------------------------------

def gray_folder(root: Path, classes: dict[str, list[int]]) -> Path:
    """Class folders of solid gray PNGs, one per value listed (repeats are exact copies)."""
    for name, values in classes.items():
        (root / name).mkdir(parents=True)
        for i, value in enumerate(values):
            Image.new("L", (SIZE, SIZE), value).save(root / name / f"{name}{i:02d}.png")
    return root


def prepared(tmp_path: Path, folder: Path) -> dict:
    data.download("image_folder", tmp_path / "raw", path=str(folder))
    return data.prepare("image_folder", tmp_path / "raw", tmp_path / "prep", SIZE, 1)


def test_a_nearly_black_folder_is_refused_in_one_line(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):  # 12 distinct images each, every pixel 0, 1 or 2 of 255
        (tmp_path / "black" / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 3, (SIZE, SIZE), dtype=np.uint8), "L").save(
                tmp_path / "black" / name / f"{i}.png")
    with pytest.raises(
            GanError, match=r"^data.path: the 22 train images are nearly one flat colour "
                            r"\(pixel spread 0.8\d of 255, all about 1\); nothing can be "
                            r"learnt from them. Transparent images\? They are put on "
                            r"data.background$"):
        prepared(tmp_path, tmp_path / "black")
    assert not (tmp_path / "prep").exists()


def test_copies_are_counted_warned_of_and_kept_on_one_side(tmp_path):
    # 40 images of 20 values, each twice (a00 and a20 the same), in one class; 4 go to test,
    # two pairs
    values = [12 * i for i in range(20)]
    folder = gray_folder(tmp_path / "twins", {"a": values + values})
    with pytest.warns(GanWarning) as said:  # and the small test split's warning
        found = prepared(tmp_path, folder)
    assert "data.path: 20 of the 40 images are exact copies of another (50%, over 5%); the " \
        "scores count each copy again: remove them" in [str(w.message) for w in said]
    split = {s: {float(x[0, 0, 0]) for x in data.load_prepared(tmp_path / "prep", s)["images"]}
             for s in ("train", "test")}
    assert split["train"].isdisjoint(split["test"])  # before, a00 trained and a20 tested
    assert found["duplicates"] == {"train": 18, "test": 2, "across": 0}
    assert found["test"]["count"] == 4 and found["train"]["count"] == 36
    assert data.duplicates({"train": (np.zeros((3, 2)), None), "test": (np.ones((2, 2)),
                                                                       None)}) == \
        {"train": 2, "test": 1, "across": 0}


def test_a_lone_class_and_a_small_test_split_are_named(tmp_path):
    folder = gray_folder(tmp_path / "thin", {"many": [9 * i for i in range(24)], "one": [250]})
    with pytest.warns(GanWarning) as said:
        found = prepared(tmp_path, folder)
    lines = [str(w.message) for w in said]
    assert "data.path: classes 'one' have no test image (a class needs 2 distinct images; 1 " \
        "in 10 go to test): the scores cannot check them" in lines
    assert "data.path: classes 'one' (1) have under 10 training images: too few for the " \
        "judge to learn them; add images or merge classes" in lines
    assert "data.path: the test split holds 2 images; evaluate and gan-score need at least " \
        "6: add images (1 in 10 per class go to test)" in lines
    assert found["train"]["per_class"] == [22, 1] and found["transparent"] == 0
    assert data.MIN_TEST == metrics.MIN_TEST  # prepare warns below what the scores refuse


def test_the_idx_datasets_report_copies_too(tmp_path, monkeypatch):
    from conftest import spec_for, write_idx_mirror

    contents = write_idx_mirror(tmp_path / "mirror")
    monkeypatch.setitem(data.DATASETS, "fashion_mnist", spec_for(contents))
    data.download("fashion_mnist", tmp_path / "raw", str(tmp_path / "mirror"))
    found = data.prepare("fashion_mnist", tmp_path / "raw", tmp_path / "prep", 28)
    assert found["duplicates"] == {"train": 0, "test": 0, "across": 0}
    assert found["transparent"] == 0


# --- a judge at chance -----------------------------------------------------------------------

def test_a_judge_at_chance_stops_the_classifier_stage(tmp_path, monkeypatch):
    from stages import classifier as stage

    prep = tmp_path / "prepared"
    prep.mkdir()
    torch.save(tiny_split(n=64), prep / "train.pt")  # random blobs: nothing to learn
    torch.save(tiny_split(n=40, seed=1), prep / "test.pt")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["classifier"].update(steps=4, batch_size=16, width=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["classifier", "--params", str(tmp_path / "params.yaml"),
                                      "--data", str(prep), "--out", str(tmp_path / "clf.pt"),
                                      "--metrics", str(tmp_path / "clf.json")])
    with pytest.raises(GanError) as error:  # common.run prints it as one "error:" line
        stage.main()
    said = str(error.value)
    assert said.startswith("classifier: test accuracy ") and "\n" not in said
    assert "of chance (10.0%): the judge cannot tell these images apart" in said
    assert "classifier.allow_weak: true" in said
    assert not (tmp_path / "clf.pt").exists() and not (tmp_path / "clf.json").exists()


def test_chance_and_its_margin():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    assert classifier.chance(labels, labelled=True) == 0.6
    assert classifier.chance(labels, labelled=False) == 0.25
    assert classifier.chance_margin(0.1, 10000) == classifier.CHANCE_MARGIN
    assert classifier.chance_margin(0.5, 16) == pytest.approx(0.25)  # 2 sqrt(.25 / 16)
    assert classifier.is_at_chance(0.26, 0.25, 4000)  # a rotation judge of black squares
    assert not classifier.is_at_chance(0.9156, 0.1, 10000)  # the default run's judge


# --- scores that check themselves ------------------------------------------------------------

def test_readings_no_generator_can_cause_are_the_judges():
    committed = json.loads((ROOT / "metrics" / "eval.json").read_text())
    # the default run: only precision, which flat grey images reach too (re-made 2026-12-07)
    assert set(metrics.judge_checks(committed, {})) == {"flag_precision_junk"}
    black = {**committed, "fid": 0.0, "fid_real": 0.15, "coverage": 0.0, "coverage_real": 0.0,
             "class_coverage_real": 0.27}
    flags = metrics.judge_checks(black, {"at_chance": True})
    assert sorted(f for f in flags if not f.endswith("_junk")) == ["flag_fid_below_real",
                                                                  "flag_judge_at_chance",
                             "flag_real_class_coverage_low", "flag_real_coverage_low"]
    # the generator is blamed only for what real images do better
    assert metrics.collapse_warning({"class_coverage": 0.0, "class_coverage_real": 0.0}) is None
    assert "may be mode-collapsing" in metrics.collapse_warning(
        {"class_coverage": 0.5, "class_coverage_real": 1.0})
    assert flags["flag_fid_below_real"].startswith(
        "FID 0.00 is below the real training images' 0.15: the judge cannot separate these "
        "images from real ones")


def test_an_exact_copy_of_a_twinned_training_image_is_memorised():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(30, 8, generator=gen, dtype=torch.float64)
    train[1] = train[0]  # twins: the nearest other image of either is at distance 0
    samples = torch.stack([train[0] + 1e-9, train[5], torch.randn(8, generator=gen,
                                                                  dtype=torch.float64) * 9])
    is_copy, _, _, _ = metrics.copies(train, samples)
    assert is_copy.tolist() == [True, True, False]  # before, the twin's copy was not one
    assert metrics.memorised(train, samples[:1]) == 1.0
