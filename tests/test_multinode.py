"""Training across nodes: with train.nodes: 2 the train stage, run on each of two machines
sharing the project's folder, relaunches itself as a torchrun agent and the two meet
through c10d rendezvous at $GAN_RDZV_ENDPOINT (docs/multinode.md). Here both "machines" are
127.0.0.1, one process each (gloo): the run equals the 2-process standalone one bit for bit,
and resumes exactly after one agent is killed and both are started again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_resume import assert_same_run, command, make_setup, run, stage_env

from conftest import ROOT

STEPS = 120


def project(base: Path, devices: int, nodes: int) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return make_setup(base, params, dict(arch="mlp", latent_dim=8),
                      dict(steps=STEPS, log_every=5, batch_size=32, device="cpu",
                           devices=devices, nodes=nodes, ema_decay=0.9, lr_decay="linear",
                           eval_every=0, snapshot_every=15), checkpoint_every=10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return project(tmp_path_factory.mktemp("nodes"), devices=1, nodes=2)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    base = project(tmp_path_factory.mktemp("standalone"), devices=2, nodes=1)
    out = base / "out"
    proc = run(base, out)  # train.devices: 2 relaunches under torchrun --standalone
    assert proc.returncode == 0, proc.stderr
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agent(base: Path, out: Path, port: int, run_id: str) -> subprocess.Popen:
    """One machine's train stage (which starts its torchrun agent), in a session of its own."""
    env = {**stage_env(), "GAN_RDZV_ENDPOINT": f"127.0.0.1:{port}", "GAN_RDZV_ID": run_id}
    return subprocess.Popen(command(base, out), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_several_nodes_without_an_endpoint_is_one_line(setup, tmp_path):
    env = {k: v for k, v in stage_env().items() if k != "GAN_RDZV_ENDPOINT"}
    proc = subprocess.run(command(setup, tmp_path), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: train.nodes: 2 machines meet at $GAN_RDZV_ENDPOINT")


def finish(agents: list[subprocess.Popen]) -> list[str]:
    outs = []
    for proc in agents:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        outs.append(stdout)
    return outs


def test_two_agents_train_as_the_standalone_run_does(setup, standalone):
    out = setup / "two-agents"
    port = free_port()
    said = finish([agent(setup, out, port, "same"), agent(setup, out, port, "same")])
    assert sum("train: 120 steps" in s for s in said) == 1  # rank 0 alone writes and speaks
    assert_same_run(out, standalone, STEPS, 5)


def test_one_agent_killed_then_both_restarted_resumes_exactly(setup, standalone):
    out = setup / "killed"
    port = free_port()
    first = [agent(setup, out, port, "killed"), agent(setup, out, port, "killed")]
    deadline = time.monotonic() + 300
    while not (out / "resume.pt").exists():
        assert all(p.poll() is None for p in first) and time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(first[0].pid, signal.SIGKILL)  # one machine dies: its stage, agent and rank
    try:  # the other loses its peer: it fails on its own, or its machine is restarted too
        first[1].wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(first[1].pid, signal.SIGKILL)
    for proc in first:
        proc.wait(timeout=60)
        proc.communicate()
    saved = torch.load(out / "resume.pt", weights_only=True)["step"]
    assert 0 < saved < STEPS
    shutil.rmtree(out / "evolution", ignore_errors=True)  # as DVC clears outputs first
    port = free_port()
    said = finish([agent(setup, out, port, "again"), agent(setup, out, port, "again")])
    assert sum(f"resuming from step {saved} of {STEPS}" in s for s in said) == 1
    assert_same_run(out, standalone, STEPS, 5)
