"""SIGTERM to `dvc repro` itself (a CI cancel, `timeout`, `kill PID`): DVC exits at once
without signalling its stage; the train stage must stop too, save its state, and the next
`dvc repro` must resume it to the bits of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import yaml

from conftest import END_TO_END, VENV, shell_env, tiny_project

pytestmark = END_TO_END


def trainers(repo: Path) -> list[psutil.Process]:
    """The train stage processes working in ``repo``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = proc.info["cmdline"] or []
        if "stages.train" in cmdline and proc.info["cwd"] == str(repo):
            found.append(proc)
    return found


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run(["dvc", *args], cwd=repo, env=shell_env(VENV), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_sigterm_to_dvc_repro_stops_train_and_the_next_run_resumes_exactly(tmp_path):
    repo = tiny_project(tmp_path / "project")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # Long enough to be stopped mid-run; an orphan that ran on to the end would delete the
    # state the assertions below look for.
    params["train"].update(steps=300, log_every=50, eval_every=0)
    params["resume"].update(checkpoint_every=50)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    state = repo / ".resume" / "train.pt"
    dvc(repo, "repro", "classifier")

    first = subprocess.Popen(["dvc", "repro"], cwd=repo, env=shell_env(VENV),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(state.exists, 300, "train never saved a state")
    first.send_signal(signal.SIGTERM)  # to dvc alone, as `kill PID` does
    first.communicate(timeout=60)
    wait_for(lambda: not trainers(repo), 20, "the train stage outlived dvc repro")
    assert state.exists()

    resumed = dvc(repo, "repro", "train")  # what follows train has nothing to resume
    assert "train: resuming from step " in resumed, resumed
    gan = (repo / "models" / "gan.pt").read_bytes()
    log = (repo / "metrics" / "train" / "plots" / "metrics" / "d_loss.tsv").read_text()
    steps = [int(line.split("\t")[0]) for line in log.splitlines()[1:]]
    assert steps == list(range(50, 301, 50))  # no gap, no repeat, one writer

    dvc(repo, "repro", "-f", "-s", "train")  # the uninterrupted run
    assert (repo / "models" / "gan.pt").read_bytes() == gan
    assert (repo / "metrics" / "train" / "plots" / "metrics" / "d_loss.tsv").read_text() == log
