"""Closed pipes and Ctrl-C: a stage whose output is no longer read goes on and saves its work;
every console script stops on Ctrl-C with one line and exit code 130, whenever it comes."""

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

from conftest import ROOT, tiny_split


def closed_pipe() -> int:
    """The writing end of a pipe whose reading end is already closed."""
    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.integration
def test_a_stream_whose_reader_is_gone_is_dropped_not_fatal(tmp_path):
    script = (
        "import sys\n"
        "from gan import progress\n"
        "from gan.errors import guard_streams\n"
        "guard_streams()\n"
        "for _ in progress.progress(range(40), desc='loop', unit='step', total=40):\n"
        "    print('a line', flush=True)\n"
        f"open({str(tmp_path / 'done')!r}, 'w').write('done')\n")
    write = closed_pipe()
    proc = subprocess.run([sys.executable, "-c", script], stdout=write, stderr=write,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    os.close(write)
    assert proc.returncode == 0 and (tmp_path / "done").read_text() == "done"


@pytest.mark.integration
def test_the_train_stage_trains_on_when_its_output_pipe_closes(tmp_path):
    """``dvc repro 2>&1 | head -3``: head exits after three lines; the stage goes on."""
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        torch.save(tiny_split(64, seed=len(split)), data / f"{split}.pt")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(arch="mlp", latent_dim=8, g_channels=4, d_channels=4)
    params["train"].update(steps=40, log_every=2, batch_size=16, device="cpu", eval_every=0,
                           snapshot_every=0)
    params["resume"].update(store="off", checkpoint_every=10)
    params["numerics"].update(threads=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write = closed_pipe()
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train", "--params", str(tmp_path / "params.yaml"),
         "--data", str(data), "--checkpoint", str(tmp_path / "gan.pt"), "--log-dir",
         str(tmp_path / "log"), "--resume", str(tmp_path / ".resume" / "train.pt")],
        stdout=write, stderr=write, cwd=ROOT, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "GAN_DEBUG"})
    os.close(write)
    assert proc.returncode == 0
    saved = torch.load(tmp_path / "gan.pt", weights_only=True)
    assert saved["step"] == 40


# --- Ctrl-C at any moment ---------------------------------------------------------------------

SCRIPTS = ("gan-compare", "gan-queue", "gan-sample", "gan-score")


def entry_command(name: str) -> list[str]:
    """Run a console script the way its installed wrapper does: import the entry point
    named in pyproject.toml, then call it."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts[name].split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]


def test_every_console_script_is_in_the_table():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(scripts) == list(SCRIPTS)


def importing(pid: int, timeout: float = 60) -> bool:
    """Wait until process ``pid`` has loaded a compiled module of site-packages (numpy's,
    torch's, DVC's dependencies'): it is past Python's start, importing what it needs.
    False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            return False
        if any("site-packages" in line and ".so" in line for line in maps.splitlines()):
            return True
        time.sleep(0.005)
    return False


def importing_time(command: list[str], cwd: Path, env: dict) -> float:
    """Seconds ``command`` runs from its first compiled module to its exit, left alone."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert importing(proc.pid)
    start = time.monotonic()
    proc.wait(timeout=120)
    return time.monotonic() - start


@pytest.mark.integration
@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize("moment", ["first module", "half-way"])
def test_ctrl_c_while_a_console_script_imports_is_one_line_and_130(tmp_path, name, moment):
    args = {"gan-sample": ["grid", "x.pt", "-o", "x.png"], "gan-score": ["folder"],
            "gan-queue": ["status"], "gan-compare": []}[name]
    env = dict(os.environ)  # the installed package, as a user runs it
    command = entry_command(name) + args
    # half-way through what the script does before it fails on these arguments, however
    # fast the machine: most of it is importing
    delay = 0.0 if moment == "first module" else importing_time(command, tmp_path, env) / 2
    proc = subprocess.Popen(command, cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if importing(proc.pid):
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.startswith(f"{name}: interrupted") and err.count("\n") == 1, err


# --- tracebacks that become one line -----------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["[::1:29500", "::1:29500", "[::1]]:29500", "[node0]:29500",
                                      "a[b:29500", ":29500"])
def test_a_malformed_rendezvous_endpoint_is_one_line_before_torchrun(monkeypatch, endpoint):
    from gan.errors import GanError
    from stages import train as stage

    monkeypatch.setenv("GAN_RDZV_ENDPOINT", endpoint)
    with pytest.raises(GanError, match=r"^train\.nodes: 2 machines meet at \$GAN_RDZV_ENDPOINT, "
                                       r"which must be HOST:PORT of one of them, an IPv6 host in "
                                       r"brackets \(\[::1\]:29500\)"):
        stage.torchrun_args(1, 2)


@pytest.mark.parametrize("endpoint", ["[::1]:29500", "127.0.0.1:29500", "localhost:29500"])
def test_well_formed_rendezvous_endpoints_pass(monkeypatch, endpoint):
    import socket

    from stages import train as stage

    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port: [()])
    monkeypatch.setenv("GAN_RDZV_ENDPOINT", endpoint)
    assert f"--rdzv-endpoint={endpoint}" in stage.torchrun_args(1, 2)


STAGE_FILES = ("download", "prepare", "classifier", "train", "sample", "evaluate", "plot")


@pytest.mark.integration
@pytest.mark.parametrize("name", STAGE_FILES)
def test_a_stage_run_as_a_file_says_how_to_run_it_in_one_line(tmp_path, name):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GAN_DEBUG")}
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py"), "--params",
                           "params.yaml"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr == ("error: stages run as modules, from the project's folder: "
                           f"python -m stages.{name} ... (dvc repro runs them so)\n")
