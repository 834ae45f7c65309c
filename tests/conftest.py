"""Shared fixtures: the repo root, its params, and tiny data made in memory."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

# With more than one test worker (pyproject's addopts: one per core), every worker and every
# process it starts computes on one thread unless OMP_NUM_THREADS says otherwise. Two
# workers at two threads each put four busy threads on two cores, and OpenMP's threads spin
# waiting for each other: two tiny pipelines side by side took 99 s that way and 61 s on one
# thread each (docs/performance.md, "The test suite"). Set before torch loads, which reads
# it once. Bits still agree wherever a test compares them: both runs are made here.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from gan.config import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"  # what `bash .ci/run setup` creates
FASHION_MIRROR = Path("/usr/share/datasets/fashion-mnist")
# The marks of a test module that runs real dvc commands on Fashion-MNIST in a copy of the
# project: its `pytestmark`.
END_TO_END = [
    pytest.mark.e2e,
    pytest.mark.skipif(not FASHION_MIRROR.is_dir(), reason="Debian's dataset-fashion-mnist "
                       "is not installed (.ci/run installs it)"),
    pytest.mark.skipif(not (VENV / "bin" / "dvc").exists(), reason=".venv is missing: run "
                       "`bash .ci/run setup`"),
]


# The files that take longest, the longest first (docs/performance.md, "The test suite").
LONGEST_FIRST = ("test_queue.py", "test_ssh_remote.py", "test_readme.py", "test_store.py",
                 "test_resume.py", "test_own_images.py", "test_e2e.py", "test_multinode.py",
                 "test_orphan.py", "test_params_graph.py", "test_stages.py", "test_metrics.py",
                 "test_speed.py")


def pytest_collection_modifyitems(config, items):
    """LONGEST_FIRST's files first, in its order, then the others; each file kept whole and
    in its order. The workers (pyproject's addopts) take whole files in this order, so the
    long ones start first and the short ones fill in at the end. Every e2e test is an
    integration test too."""
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort


class StartedAProcess(AssertionError):
    """A test of the fast layer started a process."""


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise StartedAProcess(
            f"{what}: a test of the fast layer starts no process (no stage, no dvc, no "
            f"torchrun); mark it @pytest.mark.integration (README, \"Running the tests\")")
    return refused


def _process_starters():
    import multiprocessing

    return [(subprocess.Popen, "__init__", "subprocess"), (os, "fork", "os.fork"),
            (os, "posix_spawn", "os.posix_spawn"), (os, "system", "os.system"),
            (multiprocessing.Process, "start", "multiprocessing")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """The two layers of tests: ``@pytest.mark.integration`` tests run stages, DVC, queues,
    torchrun and real kills; every other test (its fixtures included) computes in this
    process, and starting a process there fails at once. `pytest -m "not integration and
    not slow"` is the fast loop (README, "Running the tests")."""
    if item.get_closest_marker("integration"):
        yield
        return
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in _process_starters()]
    for owner, name, what in _process_starters():
        setattr(owner, name, _refuse(what))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@pytest.fixture(scope="session", autouse=True)
def session_resume_store(tmp_path_factory) -> Path:
    """The resume store (gan.store) of stages that module-scoped fixtures run: a folder of
    this session, never the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("resume_store")
    os.environ["GAN_RESUME_STORE"] = str(folder)
    return folder


@pytest.fixture(autouse=True)
def resume_store(tmp_path_factory, monkeypatch) -> Path:
    """Each test's own resume store, so that no test resumes from a state another left."""
    folder = tmp_path_factory.mktemp("resume_store")
    monkeypatch.setenv("GAN_RESUME_STORE", str(folder))
    return folder


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


# The recipe the unit tests train when they build a TrainConfig: Radford et al.'s betas, a
# constant learning rate, no EMA, nothing scored or snapshotted during training, where the
# dataclass's defaults are params.yaml's shipped recipe. The tests' expectations (bits,
# fingerprints, timings) were made with it.
UNIT_RECIPE = {"betas": (0.5, 0.999), "lr_decay": "constant", "ema_decay": None,
               "ema_warmup": 10.0, "eval_every": 0, "snapshot_every": 0}


def unit_train(**keys) -> TrainConfig:
    """A TrainConfig of the unit tests' recipe, ``keys`` given on top of it."""
    return TrainConfig(**{**UNIT_RECIPE, **keys})


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


def _is_venv_bin(folder: Path) -> bool:
    return (folder.parent / "pyvenv.cfg").is_file()


def shell_env(venv: Path | None = VENV) -> dict[str, str]:
    """The environment of a user's shell, for tests that run `dvc` the way a user does.

    README's first command is `bash .ci/run setup && . .venv/bin/activate && dvc repro`: DVC
    runs each stage's `python` from PATH, so the stages find the project's packages because
    the shell activated `.venv`. With ``venv`` this is the shell after
    `. <venv>/bin/activate`: VIRTUAL_ENV set, its bin/ first on PATH, PYTHONHOME unset. With
    ``venv=None`` it is a fresh shell with no virtual environment: the bin/ of every venv on
    PATH (the one running these tests included) is taken off it. Either way with a git
    identity for the commits tests make, DVC's analytics off and GAN_DEBUG unset.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONHOME", "GAN_DEBUG")}
    dropped = set()
    if os.environ.get("VIRTUAL_ENV"):
        dropped.add(os.path.realpath(Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    if sys.prefix != sys.base_prefix:  # running in a venv: its bin/ holds sys.executable
        dropped.add(os.path.realpath(Path(sys.executable).parent))
    path = [entry for entry in env.get("PATH", os.defpath).split(os.pathsep)
            if entry and os.path.realpath(entry) not in dropped
            and not _is_venv_bin(Path(entry))]
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        path.insert(0, str(venv / "bin"))
    env["PATH"] = os.pathsep.join(path)
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
               DVC_NO_ANALYTICS="1")
    return env


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


def tiny_params(path: Path, data: dict | None = None) -> None:
    """Shrink a params.yaml so the whole pipeline runs in about a minute; ``data``: keys of
    its data section to set as well."""
    params = yaml.safe_load(path.read_text())
    params["data"].update(data or {})
    params["model"].update(arch="mlp")
    params["train"].update(steps=6, log_every=2, batch_size=32, device="cpu")
    params["sample"].update(n=16, nearest_pool=64)
    # a judge that passes its gates (gan.classifier.gate_errors) in a few seconds
    params["classifier"].update(steps=60, batch_size=64, width=4)
    params["evaluate"].update(n_samples=200, train_fid_samples=100)
    params["train"].update(eval_every=3)  # the FID curve: points at steps 3 and 6
    # one thread per stage, as the test workers (above): portable mode's bits hold at any
    # fixed count, and the committed run's two would put two busy threads per core
    params["numerics"].update(threads=1)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


# Images of a tiny project's folder (tiny_project): 900 to train on, 100 in the test split.
TINY_IMAGES = 1000


@functools.cache
def fashion_train_split() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fashion-MNIST's training split from Debian's files, read and verified once a worker."""
    from gan.export_folder import read_split

    return read_split("fashion_mnist", str(FASHION_MIRROR), "train")


def tiny_project(dest: Path, folder: bool = True) -> Path:
    """A copy of the project on tiny params, committed as the first commit of its own repo.

    Its data: the first TINY_IMAGES Fashion-MNIST training images, written as PNGs in class
    folders inside the project (``tiny_images``, data.dataset image_folder, the path of
    docs/own_images.md), so that the classifier, sample and evaluate stages and DVC's copies
    of data/ handle a thousand images, not 70,000. Without ``folder``, the default's data:
    Fashion-MNIST's IDX files, all of them.
    """
    repo = copy_project(dest)
    for stale in ("dvc.lock", "metrics"):  # the committed default run is not the tiny one
        target = repo / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if folder:
        from gan.export_folder import export

        export(repo / "tiny_images", *fashion_train_split(), TINY_IMAGES, class_folders=True,
               tint=False, size=None)
    tiny_params(repo / "params.yaml",
                {"dataset": "image_folder", "path": "tiny_images"} if folder else None)
    env = shell_env(venv=None)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "tiny project"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    return repo
