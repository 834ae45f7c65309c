import gzip

import pytest
import torch

from gan import data
from gan.batches import DeviceBatches
from gan.errors import GanError

from conftest import FASHION_MIRROR, spec_for, write_idx_mirror


@pytest.fixture
def tiny_mirror(tmp_path, monkeypatch):
    """A mirror of a made-up IDX dataset registered as 'fashion_mnist' for the test."""
    mirror = tmp_path / "mirror"
    contents = write_idx_mirror(mirror)
    monkeypatch.setitem(data.DATASETS, "fashion_mnist", spec_for(contents))
    return mirror, contents


def test_download_copies_verified_files(tiny_mirror, tmp_path):
    mirror, contents = tiny_mirror
    out = tmp_path / "raw"
    sources = data.download("fashion_mnist", out, str(mirror))
    assert sorted(p.name for p in out.iterdir()) == sorted(contents)
    for name, blob in contents.items():
        assert (out / name).read_bytes() == blob
        assert sources[name].endswith(f"{name}.gz")


def test_download_reads_uncompressed_files_and_the_env_mirror(tiny_mirror, tmp_path,
                                                              monkeypatch):
    mirror, contents = tiny_mirror
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, blob in contents.items():
        (plain / name).write_bytes(blob)
    monkeypatch.setenv(data.MIRROR_ENV, str(plain))
    data.download("fashion_mnist", tmp_path / "raw")
    assert (tmp_path / "raw" / "t10k-labels-idx1-ubyte").read_bytes() == \
        contents["t10k-labels-idx1-ubyte"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_file_is_named_and_leaves_previous_output(tiny_mirror, tmp_path, damage):
    mirror, contents = tiny_mirror
    out = tmp_path / "raw"
    data.download("fashion_mnist", out, str(mirror))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    blob = bytearray(contents["train-images-idx3-ubyte"])
    if damage == "flip":
        blob[500] ^= 0x01
    else:
        blob = blob[:-100]
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(blob)))
    expected = "SHA-256 of the content" if damage == "flip" else "truncated or wrong file"
    with pytest.raises(GanError, match=rf"train-images-idx3-ubyte.gz: .*{expected}"):
        data.download("fashion_mnist", out, str(mirror))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".download")] == []


def test_missing_mirror_file_and_folder(tiny_mirror, tmp_path):
    mirror, _ = tiny_mirror
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(GanError, match="t10k-labels-idx1-ubyte: missing"):
        data.download("fashion_mnist", tmp_path / "raw", str(mirror))
    with pytest.raises(GanError, match="data.mirror: folder .* does not exist"):
        data.download("fashion_mnist", tmp_path / "raw", str(tmp_path / "nowhere"))
    assert not (tmp_path / "raw").exists()


def test_unknown_dataset():
    with pytest.raises(GanError, match="data.dataset: got 'cifar', allowed: fashion_mnist"):
        data.dataset_spec("cifar")


def test_archive_md5_is_required_where_no_content_hash_is_known():
    raw = data.DATASETS["kmnist"].files["test_labels"]
    content = bytes(raw.size)
    with pytest.raises(GanError, match="only the upstream .gz archive"):
        data.verify(raw, content, "f" * 32, FASHION_MIRROR)
    data.verify(raw, content, raw.archive_md5, FASHION_MIRROR)  # size and MD5 both match


@pytest.mark.parametrize("size,pad", [(28, False), (32, True), (64, False)])
def test_prepare_normalises_and_sizes(tiny_mirror, tmp_path, size, pad):
    mirror, contents = tiny_mirror
    data.download("fashion_mnist", tmp_path / "raw", str(mirror))
    metrics = data.prepare("fashion_mnist", tmp_path / "raw", tmp_path / "prep", size)
    train = data.load_prepared(tmp_path / "prep", "train")
    test = data.load_prepared(tmp_path / "prep", "test")
    assert train["images"].shape == (120, 1, size, size)
    assert test["images"].shape == (40, 1, size, size)
    assert train["images"].dtype == torch.float32
    assert train["images"].min() >= -1.0 and train["images"].max() <= 1.0
    assert metrics["train"]["count"] == 120 and metrics["test"]["count"] == 40
    assert metrics["train"]["per_class"] == [12] * 10
    assert train["labels"].tolist() == [i % 10 for i in range(120)]
    if size == 28:  # exact: byte b -> b / 127.5 - 1
        raw = torch.tensor(list(contents["train-images-idx3-ubyte"][16:16 + 784]))
        torch.testing.assert_close(train["images"][0, 0].flatten(), raw / 127.5 - 1)
    if pad:  # a 2 px border of background
        assert (train["images"][:, :, :2, :] == -1).all()
        assert (train["images"][:, :, :, -2:] == -1).all()


def test_prepare_refuses_a_damaged_raw_file(tiny_mirror, tmp_path):
    mirror, _ = tiny_mirror
    data.download("fashion_mnist", tmp_path / "raw", str(mirror))
    path = tmp_path / "raw" / "train-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[20] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(GanError, match="train-labels-idx1-ubyte: SHA-256"):
        data.prepare("fashion_mnist", tmp_path / "raw", tmp_path / "prep", 28)
    assert not (tmp_path / "prep").exists()


def test_missing_prepared_split(tmp_path):
    with pytest.raises(GanError, match="train.pt: missing; run the prepare stage"):
        data.load_prepared(tmp_path, "train")


@pytest.mark.skipif(not FASHION_MIRROR.is_dir(), reason="Debian's dataset-fashion-mnist "
                    "is not installed (.ci/run installs it)")
def test_real_fashion_mnist_mirror_verifies(tmp_path):
    data.download("fashion_mnist", tmp_path / "raw", str(FASHION_MIRROR))
    splits = data.load_raw("fashion_mnist", tmp_path / "raw")
    assert splits["train"][0].shape == (60000, 28, 28)
    assert splits["test"][1].shape == (10000,)
    assert sorted(set(splits["test"][1].tolist())) == list(range(10))


def test_device_batches_cover_an_epoch_once_and_resume_by_count():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    labels = torch.arange(10)
    batches = DeviceBatches(images, labels, 3, seed=7, device=torch.device("cpu"))
    epoch = torch.cat([batches.next()[1] for _ in range(3)])
    assert len(set(epoch.tolist())) == 9  # 3 batches of 3, no repeats; one image dropped
    later = [batches.next()[1] for _ in range(4)]
    again = DeviceBatches(images, labels, 3, seed=7, device=torch.device("cpu"))
    again.drawn = 3
    assert all(torch.equal(a, again.next()[1]) for a in later)
    with pytest.raises(GanError, match="train.batch_size: got 11, must be at most the 10"):
        DeviceBatches(images, labels, 11, seed=7, device=torch.device("cpu"))
