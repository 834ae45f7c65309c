"""Shared fixtures: the repo root, its params, and tiny data made in memory."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
FASHION_MIRROR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_split(n: int = 64, size: int = 28, channels: int = 1, classes: int = 10,
               seed: int = 0) -> dict:
    """A prepared split of random blobs: images in [-1, 1], balanced labels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, channels, size, size, generator=gen) * 2 - 1
    labels = torch.arange(n) % classes
    return {"images": images, "labels": labels, "classes": [str(i) for i in range(classes)]}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x0000 08 ndim, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_mirror(folder: Path, n_train: int = 120, n_test: int = 40, size: int = 28,
                     seed: int = 0) -> dict[str, bytes]:
    """A gzip IDX mirror of random images with labels 0..9; returns {file name: content}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            contents[name] = idx_bytes(arr)
            (folder / f"{name}.gz").write_bytes(gzip.compress(contents[name], mtime=0))
    return contents


def spec_for(contents: dict[str, bytes]):
    """A DatasetSpec whose checksums match the files ``write_idx_mirror`` wrote."""
    from gan.data import DatasetSpec, RawFile

    keys = {"train-images-idx3-ubyte": "train_images", "train-labels-idx1-ubyte": "train_labels",
            "t10k-images-idx3-ubyte": "test_images", "t10k-labels-idx1-ubyte": "test_labels"}
    files = {keys[name]: RawFile(name, len(blob), hashlib.sha256(blob).hexdigest(), "0" * 32)
             for name, blob in contents.items()}
    return DatasetSpec("FashionMNIST", files, tuple(str(i) for i in range(10)), ())


def run_stage(module: str, *args: str, cwd: Path = ROOT, env: dict | None = None):
    """Run ``python -m stages.<module>`` and return the CompletedProcess (text)."""
    full_env = {k: v for k, v in os.environ.items() if k != "GAN_DEBUG"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", f"stages.{module}", *args], cwd=cwd,
                          capture_output=True, text=True, env=full_env, timeout=600)


def copy_project(dest: Path) -> Path:
    """Copy the files git tracks (plus untracked, unignored ones) into ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest
