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

STEPS = 60


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


@pytest.mark.integration
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


@pytest.mark.integration
def test_two_agents_train_as_the_standalone_run_does(setup, standalone):
    out = setup / "two-agents"
    port = free_port()
    said = finish([agent(setup, out, port, "same"), agent(setup, out, port, "same")])
    assert sum(f"train: {STEPS} steps" in s for s in said) == 1  # rank 0 alone writes and speaks
    assert_same_run(out, standalone, STEPS, 5)


@pytest.mark.integration
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


# Faults, round two (docs/faults.md, "Multi-node runs"): cheap, in-process or one small child.

@pytest.mark.parametrize("endpoint,message", [
    ("127.0.0.1:99999", "$GAN_RDZV_ENDPOINT: port 99999 of '127.0.0.1:99999' is not a TCP port "
                        "(1 to 65535)"),
    ("127.0.0.1:0", "$GAN_RDZV_ENDPOINT: port 0 of '127.0.0.1:0' is not a TCP port"),
    ("node0.invalid:29400", "$GAN_RDZV_ENDPOINT: host 'node0.invalid' cannot be resolved "
                            "(Name or service not known); name a machine of the run"),
], ids=["port_99999", "port_0", "unresolvable"])
def test_a_bad_rendezvous_port_or_host_is_one_line_before_torchrun(monkeypatch, endpoint,
                                                                   message):
    from gan.errors import GanError
    from stages import train as stage

    def resolve(host, port):
        if host.endswith(".invalid"):  # no resolver is asked: CI may have none
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [()]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setenv("GAN_RDZV_ENDPOINT", endpoint)
    with pytest.raises(GanError) as caught:
        stage.torchrun_args(1, 2)
    assert str(caught.value).startswith(message)
    monkeypatch.setenv("GAN_RDZV_ENDPOINT", "127.0.0.1:29400")
    monkeypatch.setenv("GAN_RDZV_TIMEOUT", "7")
    assert stage.torchrun_args(1, 2)[-1] == "--rdzv-conf=join_timeout=67"


@pytest.mark.integration
def test_a_silent_rendezvous_is_said_and_given_up_in_one_line(monkeypatch, capsys):
    import sys

    from gan.errors import GanError
    from stages import train as stage

    started = []

    def agent(argv):  # an agent that never meets its peers: it never starts a rank
        started.append(subprocess.Popen(["sleep", "60"]))
        return started[-1]

    monkeypatch.setattr(stage, "start_child", agent)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # pytest keeps its handlers
    monkeypatch.setenv("GAN_RDZV_ENDPOINT", "127.0.0.1:29400")
    monkeypatch.setenv("GAN_RDZV_TIMEOUT", "1")
    begun = time.monotonic()
    with pytest.raises(GanError) as caught:
        stage.relaunch(["--nnodes=2"], nodes=2)
    assert time.monotonic() - begun < 15 and started[0].poll() is not None
    assert str(caught.value) == (
        "train.nodes: gave up after 1 s waiting for the 2 machines of the run at "
        "127.0.0.1:29400 ($GAN_RDZV_TIMEOUT); start the stage on every machine, with the same "
        "$GAN_RDZV_ENDPOINT and $GAN_RDZV_ID")
    assert capsys.readouterr().err == ("train: waiting up to 1 s for the 2 machines of the run "
                                       "at 127.0.0.1:29400 ($GAN_RDZV_TIMEOUT)\n")
    # Once a rank runs, the wait is over: the run may last longer than the timeout.
    rank = [sys.executable, "-c", "import time; time.sleep(2)", "-m", "stages.train"]
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                              f"sys.exit(subprocess.run({rank!r}).returncode)"])
    assert stage.supervise(child, 1, "them") == 0


@pytest.mark.integration
def test_a_killed_stage_takes_its_torchrun_agent_down(tmp_path):
    import sys

    import psutil

    code = ("import sys, time; from stages.train import start_child; "
            "agent = start_child([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(agent.pid, flush=True); time.sleep(120)")
    stage = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    agent = psutil.Process(int(stage.stdout.readline()))
    try:
        stage.kill()  # kill -9: the stage runs no cleanup of its own
        stage.wait()
        agent.wait(timeout=10)  # psutil.TimeoutExpired if the agent lives on
    finally:
        if agent.is_running() and agent.status() != psutil.STATUS_ZOMBIE:
            agent.kill()
