"""The resume store: training states kept outside the workspace, found by fingerprint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from test_resume import assert_same_run, command, make_setup, run, stage_env

from gan import io, resume, store, train
from gan.config import ModelConfig, TrainConfig
from gan.resume import Resume

from conftest import FASHION_MIRROR, ROOT, VENV, shell_env, tiny_project, tiny_split, unit_train

MODEL = ModelConfig(arch="dcgan", latent_dim=8, g_channels=4, d_channels=4)
CFG = unit_train(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16, steps=6,
                  log_every=2, device="cpu")


def test_the_store_folder_follows_the_setting_and_the_environment(monkeypatch, tmp_path):
    assert store.folder("off") is None
    assert store.folder(str(tmp_path / "s")) == tmp_path / "s"
    assert store.folder("~/states") == Path.home() / "states"
    monkeypatch.setenv("GAN_RESUME_STORE", str(tmp_path / "env"))
    assert store.folder("auto") == tmp_path / "env"
    monkeypatch.delenv("GAN_RESUME_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.folder("auto") == tmp_path / "xdg" / "gan-pipeline" / "resume"


def test_a_run_resumes_from_the_store_without_its_workspace_file(tmp_path):
    whole = train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                        resume=Resume(store=tmp_path, every=3))
    assert whole.files.kept == resume.store_path(tmp_path, json.loads(json.dumps(
        torch.load(whole.files.kept, weights_only=True)["fingerprint"])))
    assert torch.load(whole.files.kept, weights_only=True)["step"] == 3
    said = []
    # Another workspace (no file of its own): the state is found by the run's fingerprint.
    again = train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                        say=said.append, resume=Resume(
                            path=tmp_path / "elsewhere" / "train.pt", every=3, store=tmp_path))
    assert again.resumed_from == 3 and said == [
        f"train: resuming from step 3 of 6 ({whole.files.kept})"]
    for key, value in whole.checkpoint["generator"].items():
        assert torch.equal(value, again.checkpoint["generator"][key]), key
    # Another run (another seed) has another name in the store and starts from step 0.
    other = train.train(MODEL, CFG, 2, tiny_split(), progress=False,
                        say=said.append, resume=Resume(store=tmp_path, every=3))
    assert other.resumed_from == 0 and other.files.kept != whole.files.kept
    lines = store.describe(tmp_path, lambda path: resume.read_state(path)["step"])
    assert len(lines) == 2 and all(" step 3 " in line for line in lines), lines
    assert lines[1].startswith(whole.files.kept.name)  # the newest first
    assert store.clean(tmp_path) == (2, 0) and store.states(tmp_path) == []


def test_the_later_of_the_workspace_and_the_store_states_wins(tmp_path):
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 8})
    train.train(MODEL, cfg, 1, tiny_split(), progress=False,
                resume=Resume(store=tmp_path / "store", every=2))
    kept = store.states(tmp_path / "store")[0]
    state = torch.load(kept, weights_only=True)
    assert state["step"] == 6
    torch.save({**state, "step": 4}, tmp_path / "ws.pt")  # an older state of the same run
    said = []
    train.train(MODEL, cfg, 1, tiny_split(), progress=False,
                say=said.append,
                resume=Resume(store=tmp_path / "store", path=tmp_path / "ws.pt", every=2))
    assert said == [f"train: resuming from step 6 of 8 ({kept})"]


def test_prune_keeps_the_newest_states_and_never_one_in_use(tmp_path):
    from gan.io import exclusive

    paths = []
    store.open_store(tmp_path)
    for i in range(5):
        path = tmp_path / f"{i:032x}.pt"
        store.record(path)
        path.write_bytes(b"x")
        os.utime(path, ns=(i * 10**9, i * 10**9))
        paths.append(path)
    assert store.states(tmp_path) == paths[::-1]
    with exclusive(paths[0], "a train stage"):  # the oldest, but a stage holds it
        gone = store.prune(tmp_path, keep=2, current=paths[1])
    assert sorted(gone) == [paths[2]]
    assert sorted(store.states(tmp_path)) == [paths[0], paths[1], paths[3], paths[4]]
    assert store.prune(tmp_path, keep=2) == [paths[1], paths[0]]
    assert not (tmp_path / f"{0:032x}.pt.lock").exists()


@pytest.mark.integration
def test_a_killed_stage_resumes_in_another_workspace_to_the_same_bits(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    setup = make_setup(tmp_path / "setup", params,
                       dict(arch="dcgan", latent_dim=8, g_channels=8, d_channels=8),
                       dict(steps=120, log_every=10, batch_size=16, device="cpu",
                            ema_decay=0.9, lr_decay="linear", eval_every=0,
                            snapshot_every=15), checkpoint_every=20)
    reference = tmp_path / "reference"
    assert run(setup, reference).returncode == 0
    kept = Path(os.environ["GAN_RESUME_STORE"])
    assert store.states(kept) == []  # a finished run's state is deleted
    first = tmp_path / "first"
    proc = subprocess.Popen(command(setup, first), cwd=ROOT, env=stage_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not store.states(kept):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    # The workspace is gone with its state file, as a queued experiment's is.
    second = tmp_path / "second"
    again = run(setup, second)
    assert again.returncode == 0, again.stderr
    assert "train: resuming from step" in again.stdout and str(kept) in again.stdout
    assert_same_run(second, reference, 120, 10)
    assert store.states(kept) == []


def sh(repo: Path, *cmd: str, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=repo, env=shell_env(VENV), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def repo_processes(repo: Path) -> list[psutil.Process]:
    """The queue's workers, executors and stages of ``repo`` (by their working folder)."""
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cwd, cmdline = proc.info["cwd"] or "", " ".join(proc.info["cmdline"] or [])
        if cwd.startswith(str(repo)) and ("dvc" in cmdline or "stages." in cmdline):
            found.append(proc)
    return found


def start_queue(repo: Path) -> None:
    """`dvc queue start`; its worker outlives it and holds its stdout, so none is captured
    (capturing would wait for the worker to end)."""
    subprocess.run(["dvc", "queue", "start"], cwd=repo, env=shell_env(VENV), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def exec_running(repo: Path) -> bool:
    """Whether an experiment of ``repo`` runs: a live `dvc exp exec-run` naming its folder."""
    root = str(repo)
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if "exec-run" in argv and any(root in arg for arg in argv):
            return True
    return False


def wait_for(repo: Path, name: str, seconds: float = 900) -> str:
    """The queue's status once experiment ``name`` has ended (the killed one before it stays
    Running in DVC's records: its worker died with it). `dvc queue status` costs a second and
    a half of CPU, so it is asked only while no experiment's exec-run is alive."""
    deadline, status = time.monotonic() + seconds, "an experiment still runs"
    while True:
        if not exec_running(repo):
            status = sh(repo, "dvc", "queue", "status")
            line = next((row for row in status.splitlines() if f" {name} " in f" {row} "), "")
            if "Success" in line or "Failed" in line:
                return line
        assert time.monotonic() < deadline, status
        time.sleep(2)


def lock_md5(node, path: str) -> set[str]:
    """Every md5 recorded for output ``path`` in `dvc exp show --json` records."""
    found = set()
    if isinstance(node, dict):
        outs = node.get("outs")
        if isinstance(outs, dict) and isinstance(outs.get(path), dict):
            found.add(outs[path].get("hash"))
        for value in node.values():
            found |= lock_md5(value, path)
    elif isinstance(node, list):
        for value in node:
            found |= lock_md5(value, path)
    return found - {None}


@pytest.mark.e2e
@pytest.mark.skipif(not FASHION_MIRROR.is_dir(), reason="no Fashion-MNIST mirror")
@pytest.mark.skipif(not (VENV / "bin" / "dvc").exists(), reason=".venv is missing")
def test_killed_queued_experiment_resumes_when_queued_again(tmp_path, resume_store):
    repo = tiny_project(tmp_path / "project")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(log_every=100, eval_every=0, snapshot_every=500)
    params["resume"]["checkpoint_every"] = 50
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # Up to train alone, each run here: sample, plot and evaluate have nothing to do with
    # where train resumes from, and would triple the test's time.
    sh(repo, "dvc", "repro", "train")  # the baseline: 6 steps
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    line = ["-S", "train.lr=3e-4", "-S", "train.steps=300"]
    try:
        sh(repo, "dvc", "exp", "run", "--queue", *line, "-n", "first", "train")
        start_queue(repo)
        deadline = time.monotonic() + 600
        while not store.states(resume_store):  # mid-train: a state is saved
            status = sh(repo, "dvc", "queue", "status") if time.monotonic() > deadline else ""
            assert not status, (status, sh(repo, "dvc", "queue", "logs", "first"))
            time.sleep(0.05)
        for proc in repo_processes(repo):  # the worker dies, as on a preempted machine
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(repo_processes(repo), timeout=30)
        saved = torch.load(store.states(resume_store)[0], weights_only=True)["step"]
        assert 0 < saved < 300

        sh(repo, "dvc", "exp", "run", "--queue", *line, "-n", "again", "train")
        start_queue(repo)
        status = wait_for(repo, "again")
        assert "Success" in status, status
        logs = sh(repo, "dvc", "queue", "logs", "again")
        assert f"train: resuming from step {saved} of 300" in logs, logs
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, env=shell_env(VENV),
                       capture_output=True, timeout=120)
        for proc in repo_processes(repo):
            proc.kill()
    assert store.states(resume_store) == []
    # The same params run uninterrupted in the workspace: the same generator, bit for bit.
    out = sh(repo, "dvc", "exp", "run", *line, "-n", "straight", "train")
    assert "resuming" not in out
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json", "--no-pager"))
    hashes = lock_md5(shown, "models/gan.pt")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())  # the workspace run's
    straight = next(o["md5"] for o in lock["stages"]["train"]["outs"]
                    if o["path"] == "models/gan.pt")
    assert straight in hashes
    assert len(hashes) == 2, hashes  # the baseline's and the line's, which both runs share


def test_gan_queue_store_lists_and_cleans_the_store(resume_store, monkeypatch, capsys):
    from gan import queue

    store.open_store(resume_store)
    store.record(resume_store / f"{'a' * 32}.pt")
    (resume_store / f"{'a' * 32}.pt").write_bytes(b"not a state")
    monkeypatch.chdir(ROOT)  # a DVC project whose params.yaml says resume.store: auto
    assert queue.main(["store"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{resume_store}: 1 state" and out[1].startswith(f"  {'a' * 32}.pt  step ?")
    assert queue.main(["store", "--clean"]) == 0
    assert capsys.readouterr().out == f"gan-queue: deleted 1 states from {resume_store}\n"
    assert store.states(resume_store) == []


# Faults, round two (docs/faults.md, "The resume store"): the store owns only what it wrote.

def _user_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"run_01.pt": b"a user's checkpoint", f"{'b' * 32}.pt.bak": b"notes"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_a_folder_holding_what_the_store_did_not_write_is_refused_and_left_alone(tmp_path):
    from gan.errors import GanError

    theirs = tmp_path / "checkpoints"
    files = _user_files(theirs)
    with pytest.raises(GanError, match=r"^resume\.store: .*checkpoints holds 2 entries the "
                                       r"store did not write \(.*run_01\.pt\)"):
        store.open_store(theirs)
    with pytest.raises(GanError, match="did not write"):
        train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                    resume=Resume(store=theirs, every=3))
    assert store.states(theirs) == [] and store.clean(theirs) == (0, 0)
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == files
    # A new or empty folder is marked as the store's; one holding anything, even names of
    # the store's own form, is not.
    assert store.open_store(tmp_path / "new") == [] and store.marked(tmp_path / "new")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / f"{'c' * 32}.pt").write_bytes(b"x")
    with pytest.raises(GanError, match=r"holds 1 entries the store did not write"):
        store.open_store(tmp_path / "old")
    assert not store.marked(tmp_path / "old")


def test_prune_and_clean_touch_only_the_stores_own_regular_files(tmp_path, resume_store,
                                                                 monkeypatch, capsys):
    from gan import queue

    assert store.open_store(resume_store) == []
    files = _user_files(resume_store)  # put there after the store marked its folder
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"not the store's")
    (resume_store / f"{'d' * 32}.pt").symlink_to(victim)  # a link under the store's name
    store.record(resume_store / f"{'e' * 32}.pt")
    (resume_store / f"{'e' * 32}.pt").write_bytes(b"x")
    assert store.states(resume_store) == [resume_store / f"{'e' * 32}.pt"]
    assert store.prune(resume_store, keep=1) == []
    monkeypatch.chdir(ROOT)
    assert queue.main(["store", "--clean"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"gan-queue: deleted 1 states from {resume_store}",
                   f"gan-queue: left alone 3 entries of {resume_store} that the store did not "
                   f"write: {'b' * 32}.pt.bak, {'d' * 32}.pt, run_01.pt"]
    assert victim.read_bytes() == b"not the store's"
    assert (resume_store / f"{'d' * 32}.pt").is_symlink()
    for name, data in files.items():
        assert (resume_store / name).read_bytes() == data
    # A folder the store never marked: nothing is listed or deleted, in one line.
    (resume_store / store.MARK).unlink()
    assert queue.main(["store", "--clean"]) == 2
    assert capsys.readouterr().err == (f"error: {resume_store}: not a resume store (no "
                                       f"{store.MARK} in it: the store has written nothing "
                                       f"there); nothing listed or deleted\n")


# Faults, round three (docs/faults.md): ownership is decided by what the store wrote.

def _md5_named(folder: Path) -> dict[str, bytes]:
    """Three user files named as the store names its states."""
    files = {f"{i:032x}.pt": f"a user's file {i}".encode() for i in (7, 8, 9)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        os.utime(folder / name, ns=(10**9, 10**9))  # older than any state of the store
    return files


@pytest.mark.integration
def test_user_files_named_as_states_are_never_adopted_pruned_or_cleaned(tmp_path, monkeypatch,
                                                                         capsys):
    from gan import queue
    from gan.errors import GanError

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    files = _md5_named(theirs)
    with pytest.raises(GanError, match=r"holds 3 entries the store did not write"):
        train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                    resume=Resume(store=theirs, every=2, keep=1))
    assert not store.marked(theirs)
    # The same files put into a folder after the store marked it: pruning (store_keep: 1,
    # on every save of a run) and --clean leave them.
    kept = tmp_path / "store"
    assert store.open_store(kept) == []
    files = _md5_named(kept)
    train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                resume=Resume(store=kept, every=2, keep=1))
    assert {p.name: p.read_bytes() for p in kept.iterdir() if p.name in files} == files
    ours = store.states(kept)  # the run's own latest state: store_keep 1
    assert len(ours) == 1 and ours[0].name not in files
    assert sorted(store.foreign(kept)) == sorted(files)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["resume"]["store"] = str(kept)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    from dvc.repo import Repo

    Repo.init(str(tmp_path)).close()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert queue.main(["store", "--clean", "--params", str(tmp_path / "params.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"gan-queue: deleted 1 states from {kept}"
    assert {p.name: p.read_bytes() for p in kept.iterdir() if p.name in files} == files


def test_the_store_prunes_the_states_it_recorded(tmp_path):
    kept = tmp_path / "store"
    assert store.open_store(kept) == []
    states = [kept / f"{i:032x}.pt" for i in range(3)]
    for i, path in enumerate(states):
        store.record(path)
        io.save_torch({"format": 1}, path)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    assert store.prune(kept, keep=1) == [states[1], states[0]]
    assert store.states(kept) == [states[2]]


def _stage_args(project: Path):
    from types import SimpleNamespace

    return SimpleNamespace(checkpoint=project / "models" / "gan.pt",
                           log_dir=project / "metrics" / "train",
                           resume=project / ".resume" / "train.pt",
                           evolution=project / "outputs" / "evolution", data=project / "data",
                           classifier=None)


@pytest.mark.parametrize("where", ["models", "project", "file", "under_file", "empty", "loop"])
def test_a_store_that_cannot_be_the_stores_is_refused_before_training(where, tmp_path,
                                                                      monkeypatch):
    from gan.errors import GanError
    from gan.sections.numerics import NumericsConfig
    from gan.sections.resume import ResumeConfig
    from stages import train as train_stage

    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "a_file").write_text("mine")
    monkeypatch.chdir(project)
    setting, expected = {
        "models": ("models", r"resume\.store: models is \(or holds\) the project's .*models"),
        "project": (str(tmp_path), r"resume\.store: .* is \(or holds\) the project's "),
        "file": ("a_file", r"resume\.store: a_file is a file or lies under one"),
        "under_file": ("a_file/store", r"resume\.store: a_file/store is a file or lies under"),
        "empty": ("", r"resume\.store: got '', expected auto, off or a folder"),
        "loop": ("loop", r"resume\.store: loop: "),
    }[where]
    (project / "loop").symlink_to(project / "loop")
    with pytest.raises(GanError, match="^" + expected) as caught:
        train_stage.fit(_stage_args(project), 1, MODEL, CFG, None, ResumeConfig(store=setting),
                        NumericsConfig())
    assert "\n" not in str(caught.value)
    assert (project / "a_file").read_text() == "mine"
    assert not (project / "models" / store.MARK).exists()


def test_a_lock_or_state_that_is_a_link_is_never_followed(tmp_path, resume_store):
    from gan.errors import GanError
    from gan.io import exclusive

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    store.open_store(resume_store)
    state = resume_store / f"{'f' * 32}.pt"
    (resume_store / f"{state.name}.lock").symlink_to(victim)
    with pytest.raises(GanError, match=r"\.pt\.lock: a symbolic link where a lock file "
                                       r"belongs; .* remove it$"):
        with exclusive(state, "a train stage"):
            pass
    assert victim.read_text() == "precious\n"
    assert not store._in_use(state)
    # A state linked into the store from outside it is not read.
    first = train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                        resume=Resume(store=resume_store, every=3))
    outside = tmp_path / "outside.pt"
    first.files.kept.rename(outside)
    first.files.kept.symlink_to(outside)
    said = []
    again = train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                        say=said.append, resume=Resume(store=resume_store, every=0))
    assert again.resumed_from == 0
    assert said == [f"train: ignoring {first.files.kept}: a symbolic link, which is never "
                    f"followed; starting from step 0"]


def test_a_state_whose_step_is_past_the_runs_length_is_refused_in_one_line(tmp_path):
    first = train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                        resume=Resume(store=tmp_path, every=3))
    saved = torch.load(first.files.kept, weights_only=True)
    torch.save({**saved, "step": 10**9}, first.files.kept)
    said = []
    again = train.train(MODEL, CFG, 1, tiny_split(), progress=False,
                        say=said.append, resume=Resume(store=tmp_path, every=0))
    assert again.resumed_from == 0 and again.checkpoint["step"] == 6
    assert said == [f"train: ignoring {first.files.kept}: its step 1000000000 does not fit a "
                    f"run of 6 steps; starting from step 0"]


def test_a_full_store_warns_once_and_the_run_goes_on_with_its_workspace_state(
        tmp_path, monkeypatch, capsys):
    from gan.errors import GanError

    real_save = io.save_torch
    kept = tmp_path / "store"

    def full_store(value, path):
        if Path(path).parent == kept:
            raise GanError(f"{path}: cannot write it: no space left on the device")
        real_save(value, path)

    monkeypatch.setattr(io, "save_torch", full_store)
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 8})
    result = train.train(MODEL, cfg, 1, tiny_split(), progress=False,
                         resume=Resume(store=kept, path=tmp_path / "ws" / "train.pt", every=2))
    assert result.checkpoint["step"] == 8
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: resume.store: {result.files.kept}: cannot write it: no space left on the "
        "device; training goes on"), warnings
    assert torch.load(tmp_path / "ws" / "train.pt", weights_only=True)["step"] == 6
    assert store.states(kept) == []
