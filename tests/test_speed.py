"""The speed paths: precision, channels_last, DDP on gloo, and the CUDA path when present."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gan import memory, runtime, train
from gan.config import ModelConfig, TrainConfig, to_dict
from gan.errors import GanError
from gan.resume import Resume, fingerprint, save_state

from conftest import ROOT, tiny_split, unit_train

MODEL = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4)
GP_MODEL = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4, d_norm="layer")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def train_cfg(**overrides) -> TrainConfig:
    base = dict(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16, steps=6,
                log_every=2, device="cpu")
    return unit_train(**{**base, **overrides})


def losses_of(result) -> torch.Tensor:
    return torch.tensor([[h["d_loss"], h["g_loss"]] for h in result.losses])


def test_precision_auto_is_fp32_on_the_cpu_and_refusals_are_one_line():
    assert runtime.resolve_precision("auto", torch.device("cpu")) == "fp32"
    for name in ("bf16", "fp16"):
        with pytest.raises(GanError, match=rf"^train.precision: {name} is not available on "
                                           r"this mps device \(allowed here: auto, fp32\)$"):
            runtime.resolve_precision(name, torch.device("mps"))


def test_auto_memory_format_is_channels_last_for_conv_models_on_cpu_and_cuda():
    resolve = runtime.resolve_memory_format
    for device in ("cpu", "cuda"):
        assert resolve("auto", torch.device(device), "dcgan") is torch.channels_last
        assert resolve("auto", torch.device(device), "resize_conv") is torch.channels_last
        assert resolve("auto", torch.device(device), "mlp") is torch.contiguous_format
    assert resolve("auto", torch.device("mps"), "dcgan") is torch.contiguous_format
    assert resolve("contiguous", torch.device("cpu"), "dcgan") is torch.contiguous_format


def test_explicit_fp32_and_channels_last_are_the_default_bits():
    a = train.train(MODEL, train_cfg(), 0, tiny_split(), progress=False)
    b = train.train(MODEL, train_cfg(precision="fp32", memory_format="channels_last"), 0,
                    tiny_split(), progress=False)
    assert a.history == b.history
    for key in a.checkpoint["generator"]:
        assert torch.equal(a.checkpoint["generator"][key], b.checkpoint["generator"][key])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("model,loss", [(MODEL, "non_saturating"), (GP_MODEL, "wgan_gp")])
def test_reduced_precision_trains_close_to_fp32(precision, model, loss):
    full = train.train(model, train_cfg(loss=loss), 0, tiny_split(), progress=False)
    low = train.train(model, train_cfg(loss=loss, precision=precision), 0, tiny_split(),
                      progress=False)
    assert torch.isfinite(losses_of(low)).all()
    # 6 steps from the same weights: bf16 keeps ~3 significant digits, so the losses
    # (about 1.4 and 0.7; the critic's near 0) agree to a few hundredths. fp16's scalers
    # skip the first step or two while they lower their scale from 65536, so that run
    # lags by those steps.
    tol = 0.05 if precision == "bf16" else 0.25
    torch.testing.assert_close(losses_of(low), losses_of(full), atol=tol, rtol=tol)
    scalers = low.state["scalers"]
    assert all(s["scale"] > 0 for s in scalers) if precision == "fp16" else scalers == [{}, {}]


def test_fp16_resume_restores_the_scalers(tmp_path):
    cfg = train_cfg(precision="fp16", steps=8)
    whole = train.train(MODEL, cfg, 0, tiny_split(), progress=False)
    path = tmp_path / "resume.pt"
    short = train.train(MODEL, train_cfg(precision="fp16", steps=4), 0, tiny_split(),
                        progress=False).state
    short["config"]["train"] = to_dict(cfg)
    short["fingerprint"] = fingerprint(0, MODEL, cfg, tiny_split(), train.place(MODEL, cfg))
    save_state(short, path)
    resumed = train.train(MODEL, cfg, 0, tiny_split(), progress=False,
                          say=lambda _: None, resume=Resume(path=path))
    assert resumed.resumed_from == 4
    assert resumed.state["scalers"] == whole.state["scalers"]
    for key, value in whole.checkpoint["generator"].items():
        assert torch.equal(value, resumed.checkpoint["generator"][key]), key


def test_channels_last_trains_close_to_contiguous():
    a = train.train(MODEL, train_cfg(), 0, tiny_split(), progress=False)
    b = train.train(MODEL, train_cfg(memory_format="channels_last"), 0, tiny_split(),
                    progress=False)
    torch.testing.assert_close(losses_of(b), losses_of(a), atol=1e-3, rtol=1e-3)


@cuda
def test_cuda_fp32_follows_the_cpu_and_bf16_is_finite():
    cpu = train.train(MODEL, train_cfg(steps=20, log_every=5), 0, tiny_split(256),
                      progress=False)
    gpu = train.train(MODEL, train_cfg(steps=20, log_every=5, device="cuda", precision="fp32",
                                       memory_format="contiguous", deterministic=True), 0,
                      tiny_split(256), progress=False)
    # Same seed, but CUDA draws its own noise stream: the losses agree in level, not bits.
    torch.testing.assert_close(losses_of(gpu), losses_of(cpu), atol=0.15, rtol=0.1)
    low = train.train(MODEL, train_cfg(steps=20, log_every=5, device="cuda", precision="auto"),
                      0, tiny_split(256), progress=False)
    assert torch.isfinite(losses_of(low)).all()
    assert runtime.resolve_precision("auto", torch.device("cuda")) in ("bf16", "fp32")
    images = low.generator(torch.randn(4, 8, device="cuda"))
    assert images.shape == (4, 1, 28, 28) and torch.isfinite(images).all()


@pytest.mark.integration
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keeping_freed_memory_ends_the_page_faults_of_each_step_and_keeps_the_bits(tmp_path):
    # benchmarks/malloc_ab.py's own child runs: params.yaml's DCGAN in a fresh process,
    # with glibc's malloc at its own settings or told to keep freed memory
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    torch.save(tiny_split(256), prepared / "train.pt")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = {}
    for mode in ("default", "keep"):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.malloc_ab", "--child", mode,
                               "--archs", "dcgan", "--data", str(prepared), "--window", "10"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    # glibc's defaults hand the step's few-MB blocks back and fault them in again (about
    # 2,000 page faults per step here); kept, the heap serves them from the last step.
    assert out["keep"]["faults"] < out["default"]["faults"] / 10, out
    assert out["keep"]["digest"] == out["default"]["digest"]  # addresses change, not numbers


def test_keeping_freed_memory_leaves_the_users_own_malloc_settings(monkeypatch):
    for name, value in (("MALLOC_TRIM_THRESHOLD_", "131072"),
                        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert memory.keep_freed_memory() is False


def ddp_setup(base: Path, devices: int) -> list[str]:
    prepared = base / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_split(256), prepared / "train.pt")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(arch="mlp", latent_dim=8)
    params["train"].update(steps=20, log_every=5, batch_size=64, device="cpu", devices=devices,
                           snapshot_every=0, eval_every=0)
    params["resume"].update(checkpoint_every=0)
    # Radford et al.'s gentle Adam, under which one and two processes stay within a few
    # percent (the default's 3.2e-3 amplifies the batch-norm difference between them).
    params["train"].update(lr=2e-4, betas=[0.5, 0.999], lr_decay="constant", ema_decay=None)
    (base / "params.yaml").write_text(yaml.safe_dump(params))
    return [sys.executable, "-m", "stages.train", "--params", str(base / "params.yaml"),
            "--data", str(prepared), "--checkpoint", str(base / "out" / "gan.pt"),
            "--log-dir", str(base / "out" / "live"), "--resume", str(base / "out" / "r.pt")]


@pytest.mark.integration
def test_two_gloo_processes_follow_one_and_write_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("GAN_DEBUG", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    runs = {}
    for devices in (1, 2):
        cmd = ddp_setup(tmp_path / str(devices), devices)
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count("train: 20 steps of mlp") == 1, proc.stdout  # rank 0 only
        live = tmp_path / str(devices) / "out" / "live" / "plots" / "metrics"
        logged = [[float(row.split("\t")[1]) for row in
                   (live / f"{name}.tsv").read_text().splitlines()[1:]]
                  for name in ("d_loss", "g_loss")]
        assert len(logged[0]) == 4  # steps 5, 10, 15, 20
        runs[devices] = torch.tensor(logged).T
    # Same global batch (the same 64 images and noise, 32 per rank) and all-reduced
    # gradients: only G's batch norm differs (statistics over 32 images per rank, not 64)
    # besides summation order, so the logged means drift apart slowly: a few percent.
    torch.testing.assert_close(runs[2], runs[1], atol=0.05, rtol=0.05)
