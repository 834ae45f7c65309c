"""End to end with the real tools: dvc repro, dvc exp run -S, dvc exp show, dvc plots diff."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import END_TO_END, ROOT, VENV, shell_env, tiny_project

pytestmark = END_TO_END

STAGES = ("download", "prepare", "classifier", "train", "sample", "plot", "evaluate")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tiny_project(tmp_path_factory.mktemp("project"))


def sh(repo: Path, *cmd: str) -> str:
    """Run a command as a user does after README's `. .venv/bin/activate`."""
    proc = subprocess.run(cmd, cwd=repo, env=shell_env(VENV), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def ran(output: str, stage: str) -> bool:
    return f"Running stage '{stage}'" in output


def skipped(output: str, stage: str) -> bool:
    return f"Stage '{stage}' didn't change, skipping" in output


def test_repro_then_experiment_reruns_only_what_changed(repo):
    first = sh(repo, "dvc", "repro")
    assert all(ran(first, s) for s in STAGES), first
    assert (repo / "outputs" / "samples.png").is_file()
    assert (repo / "outputs" / "loss_curves.png").is_file()
    assert (repo / "outputs" / "evolution" / "step_000006.png").is_file()  # the last step
    assert (repo / "outputs" / "pictures" / "evolution.gif").is_file()
    scores = json.loads((repo / "metrics" / "eval.json").read_text())
    assert scores["n_samples"] == 200 and scores["fid"] > scores["fid_real"] >= 0
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline run")

    second = sh(repo, "dvc", "exp", "run", "-S", "train.lr=4e-4")
    assert skipped(second, "download") and skipped(second, "prepare"), second
    assert not ran(second, "download") and not ran(second, "prepare")
    assert skipped(second, "classifier") and not ran(second, "classifier"), second
    assert ran(second, "train") and ran(second, "sample") and ran(second, "plot"), second
    assert ran(second, "evaluate"), second


def exp_records(node):
    """Every revision's record (a "data" dict with params) anywhere in `dvc exp show --json`."""
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "params" in data:
            yield data
        for value in node.values():
            yield from exp_records(value)
    elif isinstance(node, list):
        for value in node:
            yield from exp_records(value)


def test_exp_show_holds_both_runs(repo):
    rows = json.loads(sh(repo, "dvc", "exp", "show", "--json", "--no-pager"))
    found = {}
    for data in exp_records(rows):
        lr = data["params"]["params.yaml"]["data"]["train"]["lr"]
        found[str(lr)] = data["metrics"]["metrics/train/metrics.json"]["data"]
    base = str(float(yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["lr"]))
    assert {base, "4e-4"} <= set(found) or {base, "0.0004"} <= set(found), found
    for metrics in found.values():
        assert metrics["step"] == 6 and set(metrics) >= {"d_loss", "g_loss"}


def test_plots_diff_writes_both_revisions_curves(repo):
    sh(repo, "dvc", "plots", "diff", "HEAD", "-o", "plots_out")
    html = (repo / "plots_out" / "index.html").read_text()
    # each logged point of each curve, for both revisions: 3 points x 6 curves
    for rev in ("HEAD", "workspace"):
        assert html.count(f'"rev": "{rev}"') == 3 * 6 + 2  # and 2 FID points
        assert f"static/{rev}_outputs_samples.png" in html  # the sample grid of each
        assert (repo / "plots_out" / "static" / f"{rev}_outputs_samples.png").is_file()
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake", "fid"):
        assert f'"{name}": ' in html
    for picture in ("interpolation.png", "real_vs_fake_key.png", "arithmetic.png",
                    "nearest_train.png", "evolution.gif", "step_000006.png"):
        assert picture in html


def test_bad_param_through_dvc_repro_keeps_the_cached_outputs(repo):
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "the run to keep")
    params = repo / "params.yaml"
    good = params.read_text()
    lock = (repo / "dvc.lock").read_text()
    params.write_text(good.replace("  steps: 6\n", "  steps: many\n", 1))  # train's, not 60
    proc = subprocess.run(["dvc", "repro"], cwd=repo, capture_output=True, text=True,
                          env=shell_env(VENV), timeout=600)
    assert proc.returncode != 0
    assert "error: train.steps: got 'many', expected an integer" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    params.write_text(good)
    assert (repo / "dvc.lock").read_text() == lock
    # DVC clears a stage's outputs before running it: cached ones come back from the cache,
    # the git-tracked training log from git.
    sh(repo, "dvc", "checkout", "-f")
    sh(repo, "git", "checkout", "--", "metrics")
    assert "up to date" in sh(repo, "dvc", "status")


def test_forced_repro_through_the_pipeline_timer_reproduces_every_output(repo):
    """`python -m benchmarks.pipeline_time`: one forced `dvc repro`, a row per stage, and
    the same dvc.lock afterwards: every output the same bytes (deterministic on one
    machine)."""
    sh(repo, "dvc", "repro")  # whatever an earlier test left, the lock now fits the workspace
    before = (repo / "dvc.lock").read_bytes()
    out = sh(repo, "python", "-m", "benchmarks.pipeline_time")
    rows = [line.split("|")[1].strip() for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| stage")]
    assert rows == [*STAGES, "all (dvc repro -f)"], out
    seconds = [float(line.split("|")[2]) for line in out.splitlines()
               if line.startswith("| ") and not line.startswith("| stage")]
    assert all(s > 0 for s in seconds) and seconds[-1] >= sum(seconds[:-1]) - 0.5, out
    assert "dvc.lock: unchanged, byte for byte" in out, out
    assert (repo / "dvc.lock").read_bytes() == before


def test_early_quality_scores_the_run_as_its_own_fid_curve(repo):
    """`python -m benchmarks.early_quality` trains the recipe and scores it at the asked
    steps; with the curve's sample count its FIDs are the train stage's own FID curve
    (same training, same generator, same latents: evaluate.seed and seed are both 0)."""
    sh(repo, "dvc", "repro")
    curve = {}
    for line in (repo / "metrics/train/plots/metrics/fid.tsv").read_text().splitlines()[1:]:
        step, fid = line.split("\t")
        curve[int(step)] = float(fid)
    out = sh(repo, "python", "-m", "benchmarks.early_quality", "--at", "3,6",
             "--set", "evaluate.n_samples=100")
    rows = [line.split("|")[1:-1] for line in out.splitlines()
            if line.startswith("| 0 |")]
    assert [int(r[1]) for r in rows] == [3, 6], out
    for r in rows:
        assert float(r[3]) == pytest.approx(curve[int(r[1])], abs=0.006), (out, curve)
    bad = subprocess.run(["python", "-m", "benchmarks.early_quality", "--at", "7"], cwd=repo,
                         env=shell_env(VENV), capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--at 7: past train.steps (6)" in bad.stderr, bad.stderr
