import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan import data
from gan.errors import ConfigError, GanError

from conftest import run_stage

CAT_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255),
               (0, 0, 0), (51, 102, 153), (200, 100, 50), (0, 255, 255), (255, 0, 255),
               (10, 20, 30), (240, 230, 220)]
DOG_GRAYS = [0, 25, 51, 76, 102, 127, 153, 178, 204, 255]


def write_folder(root, corrupt: str | None = None):
    """12 solid RGB PNGs in cat/ (various sizes), 10 solid grayscale JPEGs in dog/, a note."""
    for i, colour in enumerate(CAT_COLOURS):
        (root / "cat").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 30), colour).save(root / "cat" / f"c{i:02d}.png")
    for i, gray in enumerate(DOG_GRAYS):
        (root / "dog" / "inner").mkdir(parents=True, exist_ok=True)
        folder = root / "dog" / ("inner" if i == 0 else "")
        Image.new("L", (40, 25), gray).save(folder / f"d{i:02d}.jpg", quality=100)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\1")
    if corrupt == "garbage":
        (root / "dog" / "bad.png").write_bytes(b"\x89PNG this is not an image")
    elif corrupt == "truncated":
        Image.new("RGB", (64, 64), (9, 9, 9)).save(root / "cat" / "cut.png")
        blob = (root / "cat" / "cut.png").read_bytes()
        (root / "cat" / "cut.png").write_bytes(blob[:len(blob) // 2])
    return root


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "pictures")


def test_download_copies_images_with_a_manifest_and_warns_of_the_rest(folder, tmp_path):
    out = tmp_path / "raw"
    with pytest.warns(UserWarning, match=r"skipped 1 files that are not PNG/JPEG: cat/notes"):
        sources = data.download("image_folder", out, path=str(folder))
    assert len(sources) == 22
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["cat", "dog"]
    assert manifest["files"]["dog/inner/d00.jpg"]["class"] == "dog"
    assert (out / "images" / "cat" / "c03.png").read_bytes() == \
        (folder / "cat" / "c03.png").read_bytes()
    assert not (out / "images" / "cat" / "notes.txt").exists()


# a folder of a few dozen images: its small-folder warnings are expected (test_honest_data.py
# holds them)
@pytest.mark.filterwarnings("ignore::gan.errors.GanWarning")
@pytest.mark.parametrize("channels,expected", [(None, 3), (3, 3), (1, 1)])
def test_prepare_decodes_sizes_and_splits(folder, tmp_path, channels, expected):
    with pytest.warns(UserWarning):
        data.download("image_folder", tmp_path / "raw", path=str(folder))
    metrics = data.prepare("image_folder", tmp_path / "raw", tmp_path / "prep", 16, channels)
    train = data.load_prepared(tmp_path / "prep", "train")
    test = data.load_prepared(tmp_path / "prep", "test")
    # one in ten per class goes to test: 12 // 10 = 1 cat, 10 // 10 = 1 dog
    assert train["images"].shape == (20, expected, 16, 16)
    assert test["images"].shape == (2, expected, 16, 16)
    assert train["classes"] == ["cat", "dog"]
    assert sorted(test["labels"].tolist()) == [0, 1]
    assert metrics["train"]["per_class"] == [11, 9] and metrics["classes"] == 2
    assert train["images"].min() >= -1 and train["images"].max() <= 1
    # Solid images stay solid through the crop and resize: each is its colour / 127.5 - 1.
    every = torch.cat([train["images"], test["images"]])
    labels = torch.cat([train["labels"], test["labels"]])
    colours = {tuple(round((v + 1) * 127.5) for v in image[:, 0, 0].tolist())
               for image in every[labels == 0]}
    if expected == 3:
        assert colours == set(CAT_COLOURS)
        grays = {round((float(image[0, 0, 0]) + 1) * 127.5) for image in every[labels == 1]}
        assert max(abs(a - b) for a, b in zip(sorted(grays), DOG_GRAYS, strict=True)) <= 1
    torch.testing.assert_close(every, every[:, :, :1, :1].expand_as(every))


# a folder of a few dozen images: its small-folder warnings are expected (test_honest_data.py
# holds them)
@pytest.mark.filterwarnings("ignore::gan.errors.GanWarning")
def test_prepare_is_deterministic(folder, tmp_path):
    with pytest.warns(UserWarning):
        data.download("image_folder", tmp_path / "raw", path=str(folder))
    for name in ("a", "b"):
        data.prepare("image_folder", tmp_path / "raw", tmp_path / name, 8)
    for split in ("train", "test"):
        a = data.load_prepared(tmp_path / "a", split)
        b = data.load_prepared(tmp_path / "b", split)
        torch.testing.assert_close(a["images"], b["images"])
        assert torch.equal(a["labels"], b["labels"])


# a folder of a few dozen images: its small-folder warnings are expected (test_honest_data.py
# holds them)
@pytest.mark.filterwarnings("ignore::gan.errors.GanWarning")
def test_majority_grayscale_folder_becomes_one_channel(tmp_path):
    root = tmp_path / "gray"
    root.mkdir()
    for i in range(3):
        Image.new("L", (10, 10), 30 * i).save(root / f"g{i}.png")
    Image.new("RGBA", (10, 10), (1, 2, 3, 4)).save(root / "colour.png")
    data.download("image_folder", tmp_path / "raw", path=str(root))
    metrics = data.prepare("image_folder", tmp_path / "raw", tmp_path / "prep", 8)
    assert metrics["train"]["channels"] == 1 and metrics["classes"] == 1
    assert data.load_prepared(tmp_path / "prep", "train")["classes"] == ["gray"]


@pytest.mark.parametrize("corrupt,name", [("garbage", "bad.png"), ("truncated", "cut.png")])
def test_corrupt_image_is_named_and_leaves_previous_output(tmp_path, corrupt, name):
    out = tmp_path / "raw"
    with pytest.warns(UserWarning):
        data.download("image_folder", out, path=str(write_folder(tmp_path / "ok")))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    bad = write_folder(tmp_path / "bad", corrupt=corrupt)
    with pytest.warns(UserWarning), \
            pytest.raises(GanError, match=rf"{name}: not a readable PNG/JPEG image"):
        data.download("image_folder", out, path=str(bad))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_changed_raw_image_is_caught_by_the_manifest(folder, tmp_path):
    with pytest.warns(UserWarning):
        data.download("image_folder", tmp_path / "raw", path=str(folder))
    Image.new("RGB", (5, 5)).save(tmp_path / "raw" / "images" / "cat" / "c00.png")
    with pytest.raises(GanError, match="c00.png: SHA-256 differs from manifest.json"):
        data.prepare("image_folder", tmp_path / "raw", tmp_path / "prep", 8)


def test_folder_errors(tmp_path):
    with pytest.raises(GanError, match="data.path: missing"):
        data.download("image_folder", tmp_path / "raw")
    with pytest.raises(GanError, match="data.path: folder .* does not exist"):
        data.download("image_folder", tmp_path / "raw", path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(GanError, match="data.path: no PNG or JPEG images"):
        data.download("image_folder", tmp_path / "raw", path=str(tmp_path / "empty"))
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    Image.new("L", (4, 4)).save(mixed / "a" / "x.png")
    Image.new("L", (4, 4)).save(mixed / "loose.png")
    with pytest.raises(GanError, match="loose.png: an image beside class subfolders"):
        data.download("image_folder", tmp_path / "raw", path=str(mixed))
    with pytest.raises(GanError, match="manifest.json: missing; run the download stage"):
        data.prepare("image_folder", tmp_path / "nothing", tmp_path / "prep", 8)
    with pytest.raises(ConfigError, match="data.channels: got 3, but mnist is grayscale"):
        data.prepare("mnist", tmp_path, tmp_path / "prep", 28, 3)
    assert not (tmp_path / "raw").exists() and not (tmp_path / "prep").exists()


@pytest.mark.integration
def test_download_and_prepare_stages_read_data_path(folder, tmp_path, params):
    params["data"].update(dataset="image_folder", path=str(folder), image_size=32)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    common = ["--params", str(tmp_path / "params.yaml")]
    proc = run_stage("download", *common, "--out", str(tmp_path / "raw"))
    assert proc.returncode == 0, proc.stderr
    assert "22 files verified" in proc.stdout and "notes.txt" in proc.stderr
    proc = run_stage("prepare", *common, "--raw", str(tmp_path / "raw"), "--out",
                     str(tmp_path / "prep"), "--metrics", str(tmp_path / "data.json"))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "data.json").read_text())
    assert metrics["train"]["channels"] == 3 and metrics["train"]["count"] == 20
    images = data.load_prepared(tmp_path / "prep", "train")["images"]
    assert images.shape[1:] == (3, 32, 32) and np.isfinite(images.numpy()).all()
