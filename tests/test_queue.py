"""Queued experiments end to end: `gan-queue retry` finishes a sweep whose experiments failed
or lost their worker, and the finished sweep reaches another clone through git and a folder
as the DVC remote (docs/experiments.md holds the same commands; tests/test_ssh_remote.py
runs its sweep across machines over SSH)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import END_TO_END, VENV, shell_env, tiny_project

pytestmark = END_TO_END

# A sweep's lrs differ from params.yaml's 0.0032 and from each other's: the same params
# again are restored from DVC's run cache without training.


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command as a user does after README's `. .venv/bin/activate`."""
    proc = subprocess.run(cmd, cwd=cwd, env=shell_env(VENV), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)
    assert not check or proc.returncode == 0, \
        f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def sh(cwd: Path, *cmd: str) -> str:
    proc = run(cwd, *cmd)
    return proc.stdout + proc.stderr


def start_queue(repo: Path, jobs: int) -> None:
    """`dvc queue start`: its worker daemons keep the streams they are given, so a captured
    pipe would wait for them to exit; they get /dev/null."""
    subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=repo, env=shell_env(VENV),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120, check=True)


def queue_status(repo: Path) -> dict[str, str]:
    """{short stash rev: Queued/Running/Success/Failed} from `dvc queue status`."""
    out = sh(repo, "dvc", "queue", "status")
    return {line.split()[0]: line.split()[-1] for line in out.splitlines()
            if line.split() and line.split()[-1] in ("Queued", "Running", "Success", "Failed")}


def wait_for_queue(repo: Path, done, seconds: float = 400,
                   between_runs: bool = False) -> dict[str, str]:
    """Poll `dvc queue status` until ``done(status)``; with ``between_runs`` only while no
    experiment's exec-run is alive (each `dvc` call costs a second and a half of CPU, taken
    from the experiments it watches)."""
    deadline, status = time.monotonic() + seconds, {}
    while True:
        if not (between_runs and exec_runs(repo)):
            status = queue_status(repo)
            if done(status):
                return status
        assert time.monotonic() < deadline, status
        time.sleep(5)


def repo_processes(repo: Path) -> list[psutil.Process]:
    """Every process working in ``repo`` (workers, exec-runs, stages) or naming it."""
    root, found = os.path.realpath(repo), []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cwd, argv = proc.info["cwd"] or "", proc.info["cmdline"] or []
        if proc.pid != os.getpid() and (cwd == root or cwd.startswith(root + os.sep)
                                        or any(root in arg for arg in argv)):
            found.append(proc)
    return found


def stop_everything(repo: Path) -> None:
    """`dvc queue stop --kill`, then SIGKILL whatever still runs in the repo."""
    subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, env=shell_env(VENV),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
    for _ in range(3):
        procs = repo_processes(repo)
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)


def exec_runs(repo: Path) -> dict[str, psutil.Process]:
    """{stash rev: its `dvc exp exec-run` process} of the repo's running experiments."""
    found = {}
    for proc in repo_processes(repo):
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        if "exec-run" in argv and "--infofile" in argv:
            found[Path(argv[argv.index("--infofile") + 1]).stem] = proc
    return found


def train_of(proc: psutil.Process) -> psutil.Process | None:
    try:
        return next((p for p in proc.children(recursive=True) if "stages.train" in p.cmdline()),
                    None)
    except psutil.Error:
        return None


def sabotage(repo: Path, seconds: float = 400) -> tuple[str, str]:
    """As each experiment's train stage starts: SIGKILL the first one's train (a failure DVC
    records), then SIGKILL the second one's queue worker and exec-run (DVC keeps it Running).
    Returns their stash revs."""
    deadline, hit = time.monotonic() + seconds, []
    while len(hit) < 2:
        assert time.monotonic() < deadline, f"no train stage to stop after {seconds} s: {hit}"
        for rev, proc in exec_runs(repo).items():
            train = train_of(proc)
            if rev in hit or train is None:
                continue
            try:
                if not hit:
                    train.send_signal(signal.SIGKILL)
                else:
                    worker = proc.parent()
                    assert "queue-worker" in worker.cmdline(), worker.cmdline()
                    worker.send_signal(signal.SIGKILL)
                    proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue  # it ended first; the next experiment will do
            hit.append(rev)
            break
        time.sleep(0.2)
    return hit[0], hit[1]


def experiments(repo: Path) -> list[dict]:
    """Every experiment of `dvc exp show --json`: its lr, name, rev, the state its queue
    task ended in (None for one pulled from elsewhere) and its last logged step."""
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json", "--no-pager"))
    found = []
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                metrics = (data.get("metrics") or {}).get("metrics/train/metrics.json") or {}
                found.append({"lr": str(data["params"]["params.yaml"]["data"]["train"]["lr"]),
                              "name": rev.get("name") or exp.get("name"), "rev": rev["rev"],
                              "state": (exp.get("executor") or {}).get("state"),
                              "step": (metrics.get("data") or {}).get("step")})
    return found


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> dict[str, Path]:
    """The tiny project after its first `dvc repro train`, committed and pushed: git to a
    bare repository (the team's origin), outputs to a local folder (the team's DVC remote).
    Up to train alone, here and in the sweep: what retry does has nothing to do with the
    stages after it, which would more than double the test's time."""
    base = tmp_path_factory.mktemp("team")
    seed = tiny_project(base / "seed")
    origin, storage = base / "origin.git", base / "dvc-storage"
    sh(base, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    push_baseline(seed, str(origin), str(storage), targets=("train",))
    return {"seed": seed, "origin": origin, "storage": storage}


def push_baseline(seed: Path, origin: str, storage: str,
                  configure: Callable[[Path], None] | None = None,
                  targets: tuple[str, ...] = ()) -> None:
    """The baseline of docs/experiments.md's sweep across machines: ``origin`` and
    ``storage`` as the project's git and DVC remotes (``configure`` sets what each machine
    adds for itself), the pipeline (up to ``targets``) run, committed and pushed to both."""
    sh(seed, "git", "remote", "add", "origin", origin)
    sh(seed, "dvc", "remote", "add", "-d", "storage", storage)
    if configure is not None:
        configure(seed)
    sh(seed, "dvc", "repro", *targets)
    sh(seed, "git", "add", "-A")
    sh(seed, "git", "commit", "-qm", "baseline run")
    sh(seed, "git", "push", "-q", "origin", "main")
    sh(seed, "dvc", "push")


def test_retry_reruns_the_failed_and_the_dead_until_the_sweep_is_done(team, tmp_path):
    """Three lrs on two workers: one train stage killed (Failed), one worker killed with its
    exec-run (DVC: Running forever), one left alone. `gan-queue retry` re-queues the first
    two while the third still runs, and the sweep ends with three successes."""
    repo = team["seed"]
    lrs = {"0.0011", "0.0021", "0.0041"}
    try:
        for lr in sorted(lrs):
            sh(repo, "dvc", "exp", "run", "--queue", "-S", f"train.lr={lr}", "train")
        start_queue(repo, 2)
        failed, dead = sabotage(repo)

        def settled(status: dict[str, str]) -> bool:  # the failure recorded, the third going
            third = [rev for rev in status if rev not in (failed[:7], dead[:7])]
            return (status.get(failed[:7]) == "Failed" and len(third) == 1
                    and (status[third[0]] == "Success"
                         or any(rev.startswith(third[0]) for rev in exec_runs(repo))))

        status = wait_for_queue(repo, settled)
        assert status[dead[:7]] == "Running", status  # DVC's view, for good

        ours = {line.split()[1]: line.split()[2]
                for line in sh(repo, "gan-queue", "status").splitlines()}
        assert ours.pop(failed[:7]) == "failed" and ours.pop(dead[:7]) == "dead", ours
        assert list(ours.values()) in (["running"], ["success"]), ours

        retried = run(repo, "gan-queue", "retry", "-j", "3", "--wait", "--timeout", "400")
        out = retried.stdout + retried.stderr
        assert retried.returncode == 0, out
        assert "was failed; queued again: train.lr=" in out, out
        assert "was dead (" in out and out.count(": success") == 2, out

        status = queue_status(repo)  # each experiment once, every one of them done
        assert sorted(status.values()) == ["Success"] * 3, status
        found = experiments(repo)
        assert all(exp["state"] == "success" for exp in found), found
        assert {exp["lr"] for exp in found if exp["step"] == 6} == lrs, found
        for exp in found:  # queued again as itself: its target too, up to train
            logs = sh(repo, "dvc", "queue", "logs", exp["name"])
            assert "Running stage 'train'" in logs and "'sample'" not in logs, logs
        again = run(repo, "gan-queue", "retry")
        assert again.returncode == 0 and "nothing to retry" in again.stdout, again
    finally:
        stop_everything(repo)
    assert not repo_processes(repo)

    # docs/experiments.md's sweep across machines, its folder remote: the finished sweep
    # pushed, and a clone that pulls it has every experiment and its model, untrained.
    # (tests/test_ssh_remote.py runs the whole recipe, two machines and a laptop, over SSH.)
    sh(repo, "dvc", "exp", "push", "origin", "--all-commits")
    laptop = tmp_path / "laptop"
    sh(tmp_path, "git", "clone", "-q", str(team["origin"]), str(laptop))
    sh(laptop, "dvc", "exp", "pull", "origin", "--all-commits")
    pulled = experiments(laptop)
    assert sorted(exp["lr"] for exp in pulled) == sorted(lrs), pulled
    for exp in pulled:  # each model in the laptop's cache, as its experiment's lock says
        lock = yaml.safe_load(sh(laptop, "git", "show", f"{exp['rev']}:dvc.lock"))
        (digest,) = [out["md5"] for out in lock["stages"]["train"]["outs"]
                     if out["path"] == "models/gan.pt"]
        cached = laptop / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
        assert hashlib.md5(cached.read_bytes()).hexdigest() == digest, exp


def test_outside_a_dvc_repository_it_says_so_in_one_line(tmp_path):
    proc = run(tmp_path, "gan-queue", "retry", check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr == f"error: {tmp_path}: not a DVC repository (no .dvc folder here or " \
                          "above); run gan-queue in the project\n", proc.stderr


def test_an_empty_queue_has_nothing_to_retry(tmp_path):
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    status = run(tmp_path, "gan-queue", "status")
    assert status.stdout == "gan-queue: no experiments in the queue\n", status
    retry = run(tmp_path, "gan-queue", "retry", "--wait")
    assert retry.stdout == "gan-queue: nothing to retry: no failed or dead experiment in the " \
                           "queue\n" and retry.stderr == "", retry
