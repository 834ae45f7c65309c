"""Exact resume: kill training for real, run it again, and get the same bits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from gan import train
from gan.config import ModelConfig, TrainConfig

from conftest import ROOT, tiny_split

STEPS = 240


@pytest.fixture(scope="module")
def setup(tmp_path_factory, params_module):
    base = tmp_path_factory.mktemp("resume")
    prepared = base / "prepared"
    prepared.mkdir()
    torch.save(tiny_split(256), prepared / "train.pt")
    params = yaml.safe_load(yaml.safe_dump(params_module))
    params["model"].update(arch="dcgan", latent_dim=8, g_channels=8, d_channels=8)
    params["train"].update(steps=STEPS, log_every=10, batch_size=16, checkpoint_every=20,
                           device="cpu", ema_decay=0.9, lr_decay="linear", eval_every=0)
    (base / "params.yaml").write_text(yaml.safe_dump(params))
    return base


@pytest.fixture(scope="module")
def params_module():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def command(base: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "stages.train", "--params", str(base / "params.yaml"),
            "--data", str(base / "prepared"), "--checkpoint", str(out / "gan.pt"),
            "--log-dir", str(out / "live"), "--resume", str(out / "resume.pt")]


def run(base: Path, out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GAN_DEBUG"}
    return subprocess.run(command(base, out), cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)


def start_then_signal(base: Path, out: Path, sig: int) -> subprocess.Popen:
    """Start training, wait for its first resumable checkpoint, then send ``sig``."""
    proc = subprocess.Popen(command(base, out), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "resume.pt").exists():
        assert proc.poll() is None, f"finished before a checkpoint: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(timeout=300)
    return proc


def generator_of(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {**ckpt["generator"], **{f"ema.{k}": v for k, v in ckpt["generator_ema"].items()}}


def log_rows(out: Path, name: str = "d_loss") -> list[str]:
    return (out / "live" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()


@pytest.fixture(scope="module")
def uninterrupted(setup):
    out = setup / "straight"
    proc = run(setup, out)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "resume.pt").exists()  # removed once the run finished
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["kill-9", "sigint", "sigterm"])
def test_interrupted_run_resumes_to_the_same_bits(setup, uninterrupted, sig):
    out = setup / f"interrupted-{sig}"
    proc = start_then_signal(setup, out, sig)
    stderr = proc.stderr.read()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # a clean stop: a last checkpoint and one line saying how to resume
        assert proc.returncode == 130, stderr
        assert "interrupted at step" in stderr and "again to resume" in stderr
        assert "Traceback" not in stderr
    assert not (out / "gan.pt").exists()
    saved_step = torch.load(out / "resume.pt", weights_only=False)["step"]
    assert 0 < saved_step < STEPS

    again = run(setup, out)
    assert again.returncode == 0, again.stderr
    assert f"resuming from step {saved_step} of {STEPS}" in again.stdout
    expected, got = generator_of(uninterrupted / "gan.pt"), generator_of(out / "gan.pt")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # the curve has no gap and no repeated step
    for name in train.LOG_KEYS:
        assert log_rows(out, name) == log_rows(uninterrupted, name)
    assert [int(r.split("\t")[0]) for r in log_rows(out)[1:]] == list(range(10, STEPS + 1, 10))


def test_checkpoint_of_another_configuration_is_ignored(setup, uninterrupted, tmp_path):
    out = tmp_path / "other"
    start_then_signal(setup, out, signal.SIGKILL)
    params = yaml.safe_load((setup / "params.yaml").read_text())
    params["train"]["lr"] = 4e-4
    other = tmp_path / "params"
    other.mkdir()
    (other / "params.yaml").write_text(yaml.safe_dump(params))
    (other / "prepared").symlink_to(setup / "prepared")
    proc = run(other, out)
    assert proc.returncode == 0, proc.stderr
    assert "ignoring" in proc.stdout and "made with other params or data" in proc.stdout
    assert "resuming" not in proc.stdout


def test_corrupt_resume_file_is_ignored_and_said(setup, tmp_path):
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "resume.pt").write_bytes(b"\x00" * 100)
    params = yaml.safe_load((setup / "params.yaml").read_text())
    params["train"]["steps"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "prepared").symlink_to(setup / "prepared")
    proc = run(tmp_path, out)
    assert proc.returncode == 0, proc.stderr
    assert "ignoring" in proc.stdout and "not a readable checkpoint" in proc.stdout


def test_checkpoint_every_and_device_do_not_change_the_fingerprint():
    data = tiny_split()
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=8, d_channels=8)
    base = dict(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16, steps=4,
                log_every=2)
    a = train.fingerprint(0, model, TrainConfig(**base, checkpoint_every=5), data["images"])
    b = train.fingerprint(0, model, TrainConfig(**base, checkpoint_every=9, device="cpu"),
                          data["images"])
    c = train.fingerprint(0, model, TrainConfig(**base, d_steps=2), data["images"])
    d = train.fingerprint(0, model, TrainConfig(**base), data["images"] * 0.5)
    assert a == b and len({a, c, d}) == 3


def test_diverged_weights_are_never_checkpointed(tmp_path):
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=8, d_channels=8)
    cfg = TrainConfig(loss="lsgan", optimizer="sgd", lr=1.0, betas=(0.0, 0.999),
                      batch_size=16, steps=200, log_every=100, checkpoint_every=1,
                      device="cpu")
    data = tiny_split()
    data["images"] = data["images"] * 1e30
    with pytest.raises(train.GanError, match="diverged"):
        train.train(model, cfg, 0, data, resume_path=tmp_path / "r.pt", progress=False,
                    say=lambda _: None)
    if (tmp_path / "r.pt").exists():
        saved = torch.load(tmp_path / "r.pt", weights_only=False)
        assert all(torch.isfinite(v).all() for v in saved["generator"].values()
                   if v.is_floating_point())
