"""Exact resume: kill training for real, run it again, and get the same bits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from gan import resume, train
from gan.config import ModelConfig, TrainConfig
from gan.resume import Resume

from conftest import ROOT, tiny_split, unit_train

STEPS = 240
DDP_STEPS = 60
# The fingerprint part of a state saved by a CUDA run, and the size of a CUDA generator's
# state (its seed and offset); a CPU generator's state is 5,056 bytes.
CUDA_DEVICE = "cuda, bf16, channels_last, 1 process"
CUDA_NOISE_STATE = torch.arange(16, dtype=torch.uint8)


@pytest.fixture(scope="module")
def params_module():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def make_setup(base: Path, params: dict, model: dict, train_keys: dict,
               checkpoint_every: int) -> Path:
    prepared = base / "prepared"
    prepared.mkdir(parents=True)
    torch.save(tiny_split(256), prepared / "train.pt")
    params = yaml.safe_load(yaml.safe_dump(params))
    params["model"].update(model)
    params["train"].update(train_keys)
    params["resume"]["checkpoint_every"] = checkpoint_every
    (base / "params.yaml").write_text(yaml.safe_dump(params))
    return base


@pytest.fixture(scope="module")
def setup(tmp_path_factory, params_module):
    return make_setup(tmp_path_factory.mktemp("resume"), params_module,
                      dict(arch="dcgan", latent_dim=8, g_channels=8, d_channels=8),
                      dict(steps=STEPS, log_every=10, batch_size=16, device="cpu",
                           ema_decay=0.9, lr_decay="linear", eval_every=0, snapshot_every=15),
                      checkpoint_every=20)


@pytest.fixture(scope="module")
def ddp_setup(tmp_path_factory, params_module):
    # mlp: its G has batch norm, whose running statistics differ from rank to rank
    return make_setup(tmp_path_factory.mktemp("resume-ddp"), params_module,
                      dict(arch="mlp", latent_dim=8),
                      dict(steps=DDP_STEPS, log_every=5, batch_size=32, device="cpu",
                           devices=2, ema_decay=0.9, lr_decay="linear", eval_every=0,
                           snapshot_every=15),
                      checkpoint_every=10)


def command(base: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "stages.train", "--params", str(base / "params.yaml"),
            "--data", str(base / "prepared"), "--checkpoint", str(out / "gan.pt"),
            "--log-dir", str(out / "live"), "--resume", str(out / "resume.pt"),
            "--evolution", str(out / "evolution")]


def stage_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GAN_DEBUG", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def run(base: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(base, out), cwd=ROOT, capture_output=True, text=True,
                          env=stage_env(), timeout=600)


def start(base: Path, out: Path) -> subprocess.Popen:
    """Start training in a session of its own; return once its first state is saved."""
    proc = subprocess.Popen(command(base, out), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=stage_env(),
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "resume.pt").exists():
        assert proc.poll() is None, f"finished before a checkpoint: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    return proc


def start_then_signal(base: Path, out: Path, sig: int) -> subprocess.Popen:
    """Start training, wait for its first resumable checkpoint, then send ``sig``."""
    proc = start(base, out)
    proc.send_signal(sig)
    proc.wait(timeout=300)
    return proc


def kill_everything(proc: subprocess.Popen) -> None:
    """SIGKILL the stage and every process it started (torchrun and its ranks), at once."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while True:  # until no process of the group is left
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "the ranks outlived SIGKILL"
        time.sleep(0.05)


def rank_process(proc: subprocess.Popen, rank: int) -> psutil.Process:
    for child in psutil.Process(proc.pid).children(recursive=True):
        if child.environ().get("RANK") == str(rank) and "stages.train" in child.cmdline():
            return child
    raise AssertionError(f"no rank {rank} under the stage")


def generator_of(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {**ckpt["generator"], **{f"ema.{k}": v for k, v in ckpt["generator_ema"].items()}}


def log_rows(out: Path, name: str = "d_loss") -> list[str]:
    return (out / "live" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()


def snapshots(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "evolution").iterdir())}


def assert_same_run(out: Path, reference: Path, steps: int, log_every: int) -> None:
    """The same generator bits, logged curves and snapshot files as ``reference``."""
    expected, got = generator_of(reference / "gan.pt"), generator_of(out / "gan.pt")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # the curve has no gap and no repeated step
    for name in train.LOG_KEYS:
        assert log_rows(out, name) == log_rows(reference, name)
    assert [int(r.split("\t")[0]) for r in log_rows(out)[1:]] == list(
        range(log_every, steps + 1, log_every))
    assert snapshots(out) == snapshots(reference)


def resume_and_compare(base: Path, out: Path, reference: Path, steps: int,
                       log_every: int) -> None:
    saved_step = torch.load(out / "resume.pt", weights_only=True)["step"]
    assert 0 < saved_step < steps
    assert not (out / "gan.pt").exists()
    shutil.rmtree(out / "evolution")  # as DVC clears the outputs before it runs the stage
    again = run(base, out)
    assert again.returncode == 0, again.stderr
    assert f"resuming from step {saved_step} of {steps}" in again.stdout
    assert_same_run(out, reference, steps, log_every)


@pytest.fixture(scope="module")
def uninterrupted(setup):
    out = setup / "straight"
    proc = run(setup, out)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "resume.pt").exists()  # removed once the run finished
    assert len(snapshots(out)) == STEPS // 15
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["kill-9", "sigint", "sigterm"])
@pytest.mark.integration
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
    # the snapshots taken so far travel in the state (DVC deletes the folder)
    saved = torch.load(out / "resume.pt", weights_only=True)
    assert saved["hooks"]["evolution"] == {
        name: blob for name, blob in snapshots(out).items()
        if int(name[5:11]) <= saved["step"]}
    assert saved["hooks"]["evolution"]
    resume_and_compare(setup, out, uninterrupted, STEPS, 10)


@pytest.mark.integration
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
    assert (f"train: ignoring {out / 'resume.pt'}: it was made with other params; starting "
            f"from step 0") in proc.stdout.splitlines()
    assert "resuming" not in proc.stdout


@pytest.mark.integration
def test_state_of_another_device_is_ignored_in_one_line(setup, uninterrupted, tmp_path,
                                                       resume_store):
    """A CUDA run's state read on the CPU: one line, then a run from step 0 to the end."""
    out = tmp_path / "cuda"
    start_then_signal(setup, out, signal.SIGKILL)
    for state in resume_store.iterdir():  # this CPU run's own state, kept outside the folder
        state.unlink()
    saved = torch.load(out / "resume.pt", weights_only=True)
    saved["fingerprint"]["device"] = CUDA_DEVICE
    saved["ranks"][0]["rng"]["noise"] = CUDA_NOISE_STATE
    torch.save(saved, out / "resume.pt")
    proc = run(setup, out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    said = [line for line in proc.stdout.splitlines() if line.startswith("train: ")]
    assert said[0] == (f"train: ignoring {out / 'resume.pt'}: it was made with other device "
                       f"({CUDA_DEVICE}; this run: cpu, fp32, channels_last, 1 process); "
                       f"starting from step 0")
    assert "resuming" not in proc.stdout
    assert_same_run(out, uninterrupted, STEPS, 10)  # all of it, from step 0


@pytest.mark.integration
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
    assert "ignoring" in proc.stdout and "not a readable resume state" in proc.stdout


@pytest.mark.integration
def test_the_stage_fingerprints_exactly_the_code_dvc_yaml_lists(setup, tmp_path):
    """The code part of a real stage's state is the digest of the files of its train deps."""
    out = tmp_path / "code"
    start_then_signal(setup, out, signal.SIGKILL)
    saved = torch.load(out / "resume.pt", weights_only=True)
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    listed = sorted(dep for dep in stage["deps"] if dep.endswith(".py"))
    files = {path: resume._digest((ROOT / path).read_bytes()) for path in listed}
    assert saved["fingerprint"]["code"] == resume._digest(files)


def write_package(folder: Path, body: str) -> None:
    (folder / "pkgx" / "sub").mkdir(parents=True)
    (folder / "pkgx" / "__init__.py").write_text("")
    (folder / "pkgx" / "sub" / "__init__.py").write_text("from pkgx.sub import mod\n")
    (folder / "pkgx" / "sub" / "mod.py").write_text(body)


def code_files_in(folder: Path, cwd: Path) -> dict[str, str]:
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import pkgx.sub; "
              "from gan import resume; print(json.dumps(resume.code_files(('pkgx',))))")
    proc = subprocess.run([sys.executable, "-c", script, str(folder)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.integration
def test_code_files_depend_on_relative_paths_and_content_only(tmp_path):
    for name, body in (("a", "X = 1\n"), ("b", "X = 1\n"), ("c", "X = 2\n")):
        (tmp_path / name).mkdir()
        write_package(tmp_path / name, body)
    a = code_files_in(tmp_path / "a", tmp_path)
    assert list(a) == ["pkgx/__init__.py", "pkgx/sub/__init__.py", "pkgx/sub/mod.py"]
    assert code_files_in(tmp_path / "b", tmp_path / "b") == a  # elsewhere, from elsewhere
    assert code_files_in(tmp_path / "c", tmp_path)["pkgx/sub/mod.py"] != a["pkgx/sub/mod.py"]


MODEL = ModelConfig(arch="mlp", latent_dim=8, g_channels=8, d_channels=8)
BASE = dict(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16, steps=4,
            log_every=2)


def parts(cfg: TrainConfig, data: dict | None = None, extra: dict | None = None,
          model: ModelConfig = MODEL) -> dict[str, str]:
    return resume.fingerprint(0, model, cfg, data or tiny_split(), train.place(model, cfg),
                             extra)


def test_what_changes_the_fingerprint_and_what_does_not():
    a = parts(unit_train(**BASE))
    assert a.keys() == {"params", "data", "device", "torch"}
    assert a["device"] == "cpu, fp32, contiguous, 1 process"
    # Free: settings that resolve to the same on this machine (the checkpoint schedule is
    # resume.checkpoint_every, which the fingerprint never sees).
    for same in (dict(device="cpu"), dict(precision="fp32"), dict(memory_format="contiguous")):
        assert parts(unit_train(**BASE, **same)) == a, same
    differs = {"params": parts(unit_train(**BASE, d_steps=2)),
               "device": parts(unit_train(**BASE, precision="bf16"))}
    data = tiny_split()
    differs["data"] = parts(unit_train(**BASE), {**data, "images": data["images"] * 0.5})
    for key, value in (("labels", data["labels"].flip(0)),
                       ("classes", [f"class {i}" for i in range(10)])):
        differs[f"data ({key})"] = parts(unit_train(**BASE), {**data, key: value})
    for name, other in differs.items():
        changed = [k for k in a if a[k] != other[k]]
        assert changed == [name.split()[0]], name
    # The caller's parts: new ones are added, one named like ours is folded into it.
    extra = parts(unit_train(**BASE), extra={"code": {"gan/x.py": "0" * 64},
                                              "params": {"evaluate.train_fid_samples": 50}})
    assert extra["code"] and extra["params"] != a["params"] and extra["data"] == a["data"]


def test_the_ignoring_line_names_what_differs():
    a = parts(unit_train(**BASE))
    b = {**a, "code": "1" * 64, "params": "2" * 64}
    assert resume.mismatch(b, {**a, "code": "3" * 64}) == "other code and params"
    assert resume.mismatch({**a, "device": CUDA_DEVICE}, a) == (
        f"other device ({CUDA_DEVICE}; this run: {a['device']})")
    assert resume.mismatch("a digest of old", a) == "other params, code or data"


def test_the_stage_fingerprints_the_classifier_when_fid_is_logged(tmp_path):
    from gan.sections.numerics import NumericsConfig

    judge = tmp_path / "classifier.pt"
    judge.write_bytes(b"weights")
    numerics = NumericsConfig(portable=True, threads=2)
    first = resume.stage_parts(numerics, judge, 50)
    assert set(first) == {"code", "numerics", "classifier", "params"}
    assert set(resume.stage_parts(numerics)) == {"code", "numerics"}  # no FID logged
    assert set(resume.stage_parts(numerics, tmp_path / "none.pt", 50)) == {"code", "numerics"}
    assert resume.stage_parts(numerics, judge, 60)["params"] != first["params"]
    judge.write_bytes(b"other weights")
    assert resume.stage_parts(numerics, judge, 50)["classifier"] != first["classifier"]
    # another thread count computes other bits: a state of the first must not resume it
    other = NumericsConfig(portable=True, threads=1)
    assert resume.stage_parts(other, judge, 50)["numerics"] != first["numerics"]


def test_diverged_weights_are_never_checkpointed(tmp_path):
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=8, d_channels=8)
    cfg = unit_train(loss="lsgan", optimizer="sgd", lr=1.0, betas=(0.0, 0.999),
                      batch_size=16, steps=200, log_every=100, device="cpu")
    data = tiny_split()
    data["images"] = data["images"] * 1e30
    with pytest.raises(train.GanError, match="diverged"):
        train.train(model, cfg, 0, data,
                    progress=False, say=lambda _: None,
                    resume=Resume(path=tmp_path / "r.pt", every=1))
    if (tmp_path / "r.pt").exists():
        saved = torch.load(tmp_path / "r.pt", weights_only=True)
        assert all(torch.isfinite(v).all() for v in saved["generator"].values()
                   if v.is_floating_point())


# --- two processes (DDP on gloo) ------------------------------------------------------------

@pytest.fixture(scope="module")
def ddp_uninterrupted(ddp_setup):
    out = ddp_setup / "straight"
    proc = run(ddp_setup, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(f"train: {DDP_STEPS} steps of mlp") == 1  # rank 0 only
    assert len(snapshots(out)) == DDP_STEPS // 15
    return out


@pytest.fixture(scope="module")
def ddp_killed(ddp_setup, tmp_path_factory):
    """The state of a 2-process run killed (every process at once) after a checkpoint."""
    out = tmp_path_factory.mktemp("ddp-killed")
    kill_everything(start(ddp_setup, out))
    return out / "resume.pt"


@pytest.mark.integration
def test_a_killed_two_process_run_resumes_to_the_same_bits(ddp_setup, ddp_uninterrupted,
                                                           ddp_killed, tmp_path):
    saved = torch.load(ddp_killed, weights_only=True)
    assert len(saved["ranks"]) == 2
    one, two = (part["rng"] for part in saved["ranks"])
    assert torch.equal(one["noise"], two["noise"])  # every rank draws the global batch
    assert not torch.equal(one["torch"], two["torch"])  # each its own dropout and penalty
    out = tmp_path / "out"
    shutil.copytree(ddp_killed.parent, out)
    resume_and_compare(ddp_setup, out, ddp_uninterrupted, DDP_STEPS, 5)


@pytest.mark.integration
@pytest.mark.parametrize("target", ["stage", "rank 1"])
def test_sigterm_stops_every_rank_at_one_step_and_resumes_to_the_same_bits(
        ddp_setup, ddp_uninterrupted, tmp_path, target):
    """SIGTERM to the stage (passed on to every rank) or to one rank alone: all ranks agree
    on the step, rank 0 saves it, and the resumed run ends with the same bits."""
    out = tmp_path / "out"
    proc = start(ddp_setup, out)
    (proc if target == "stage" else rank_process(proc, 1)).send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    stderr = proc.stderr.read()
    assert proc.returncode != 0
    if target == "stage":
        assert proc.returncode == 130, stderr[-3000:]
    assert stderr.count("again to resume") == 1, stderr[-3000:]  # rank 0 says it, once
    resume_and_compare(ddp_setup, out, ddp_uninterrupted, DDP_STEPS, 5)


@pytest.mark.integration
def test_a_state_of_another_process_count_is_ignored_in_one_line(ddp_setup, ddp_killed,
                                                                 tmp_path):
    params = yaml.safe_load((ddp_setup / "params.yaml").read_text())
    params["train"].update(devices=1, steps=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "prepared").symlink_to(ddp_setup / "prepared")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(ddp_killed, out / "resume.pt")
    proc = run(tmp_path, out)
    assert proc.returncode == 0, proc.stderr
    assert (f"train: ignoring {out / 'resume.pt'}: it was made with other device and params "
            f"(cpu, fp32, contiguous, 2 processes; this run: cpu, fp32, contiguous, "
            f"1 process); starting from step 0") in proc.stdout.splitlines()
