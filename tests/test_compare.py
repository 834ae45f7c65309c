"""gan-compare: intervals and Welch's verdicts (scipy.stats) against printed tables and by-hand
arithmetic, on synthetic groups of known means and spreads, the grouping by every param but
the training seed, and the command on a real DVC repository whose experiments are saved
with fabricated params, scores and training logs (no training)."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess

import numpy as np
import pytest
import yaml

from gan import compare
from gan.compare import Run, group_runs, runs_from_show, summarise, welch
from gan.dvc_internals import open_repo

from conftest import ROOT

# Student's t, 97.5th percentile (two-sided 95 %), from any printed table.
T_TABLE = {3: 3.182446, 4: 2.776445, 5: 2.570582, 10: 2.228139, 30: 2.042272, 1000: 1.962339}


@pytest.mark.parametrize("df, expected", sorted(T_TABLE.items()))
def test_the_interval_uses_the_printed_tables_t(df, expected):
    """df + 1 values of sd 1 around 0: the half-width is t(0.975, df) / sqrt(df + 1)."""
    values = np.linspace(-1.0, 1.0, df + 1)
    values = values / values.std(ddof=1)
    s = summarise(values.tolist())
    assert s.interval[1] * math.sqrt(df + 1) == pytest.approx(expected, abs=2e-6)


def test_the_interval_of_three_values_by_hand():
    s = summarise([4.0, 5.0, 6.0])  # mean 5, sd 1, half-width t(0.975, 2) / sqrt(3)
    half = 4.302653 / math.sqrt(3)
    assert (s.n, s.mean, s.sd) == (3, 5.0, 1.0)
    assert s.interval == pytest.approx((5 - half, 5 + half), abs=1e-6)


def test_a_group_of_one_has_no_interval_and_no_test():
    s = summarise([5.9])
    assert (s.n, s.mean, s.sd, s.interval) == (1, 5.9, None, None)
    d = welch([5.9], [6.1, 6.3])
    assert d.difference == pytest.approx(0.3) and d.interval is None
    assert d.significant is None and d.verdict == "one seed: no test"


def test_a_large_sample_recovers_the_known_mean():
    values = np.random.default_rng(1).normal(6.0, 0.5, 20_000)
    s = summarise(values.tolist())
    assert s.interval[0] < 6.0 < s.interval[1]
    assert s.interval[1] - s.interval[0] == pytest.approx(2 * 1.96 * 0.5 / math.sqrt(20_000),
                                                          rel=0.03)
    assert s.sd == pytest.approx(0.5, rel=0.02)


def test_welch_by_hand():
    """a: mean 2, var 1, n 3; b: mean 5.5, var 5/3, n 4: se^2 = 1/3 + 5/12 = 3/4, Welch's df
    = (3/4)^2 / ((1/3)^2 / 2 + (5/12)^2 / 3) = 4.9592; t = 3.5 / sqrt(3/4) = 4.0415."""
    d = welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0])
    df = 0.75 ** 2 / ((1 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    assert d.df == pytest.approx(df) and d.df == pytest.approx(4.9592, abs=1e-4)
    half = (d.interval[1] - d.interval[0]) / 2
    assert d.difference == 3.5 and d.interval == pytest.approx((3.5 - half, 3.5 + half))
    assert 2.5706 < half / math.sqrt(0.75) < 2.7765  # between the table's df 5 and df 4
    assert 0.01 < d.p < 0.0102 and d.significant and d.verdict == "significant"
    flipped = welch([4.0, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0])
    assert flipped.interval == pytest.approx((-3.5 - half, -3.5 + half)) and flipped.significant


def test_two_groups_of_one_distribution_are_called_different_at_about_five_in_a_hundred():
    """5 seeds against 5, both N(6, 0.5). Welch's test is a little cautious at so few
    seeds: 4.4 % false verdicts in 20,000 trials of this kind (3 against 3: 3.5 %). A normal
    quantile in place of t's would make about 8 %."""
    rng = np.random.default_rng(0)
    trials = 2000
    calls = sum(welch(*rng.normal(6.0, 0.5, (2, 5)).tolist()).significant for _ in range(trials))
    assert 0.03 < calls / trials < 0.06, calls / trials


def test_a_real_gap_is_found_and_the_interval_covers_it():
    """5 seeds each, means 6.0 and 5.0, sd 0.3: Welch finds the gap nearly always, and its
    interval holds the true difference about 95 % of the time."""
    rng = np.random.default_rng(2)
    found = covered = 0
    for _ in range(1000):
        d = welch(rng.normal(6.0, 0.3, 5).tolist(), rng.normal(5.0, 0.3, 5).tolist())
        found += d.significant
        covered += d.interval[0] < -1.0 < d.interval[1]
    assert found > 980 and 0.93 < covered / 1000 < 0.97, (found, covered)


def test_the_interval_covers_the_mean_at_the_stated_rate():
    rng = np.random.default_rng(3)
    hits = sum((lambda s: s.interval[0] < 0 < s.interval[1])(summarise(rng.normal(0, 1, 3)
                                                                       .tolist()))
               for _ in range(4000))
    assert 0.935 < hits / 4000 < 0.965, hits / 4000


def params_of(seed=0, lr=0.001, sample_seed=1234, classifier_seed=0, evaluate_seed=0) -> dict:
    return {"seed": seed, "train": {"lr": lr, "betas": [0.0, 0.99]},
            "sample": {"seed": sample_seed}, "classifier": {"seed": classifier_seed},
            "evaluate": {"seed": evaluate_seed}}


def run_of(name: str, fid: float, **params) -> Run:
    return Run(name, name, compare.flat(params_of(**params)), {"fid": fid})


def test_grouping_pools_the_training_seed_and_nothing_else():
    runs = [run_of("a0", 6.0), run_of("a1", 6.2, seed=1), run_of("a2", 6.1, seed=2),
            run_of("lr", 7.0, lr=0.002), run_of("sample", 6.0, sample_seed=1),
            run_of("judge", 6.0, classifier_seed=1), run_of("eval", 6.0, evaluate_seed=1)]
    groups = group_runs(runs)
    assert [[run.name for run in g.runs] for g in groups] == \
        [["a0", "a1", "a2"], ["lr"], ["sample"], ["judge"], ["eval"]]
    assert groups[0].seeds == [0, 1, 2]
    assert compare.differing(groups) == ["classifier.seed", "evaluate.seed", "sample.seed",
                                         "train.lr"]
    assert compare.label(groups[1], ["train.lr"]) == "train.lr=0.002"


def show_row(rev: str, params: dict, scores: dict | None, name=None) -> dict:
    """A row as dvc exp show --json writes it."""
    metrics = {} if scores is None else {"metrics/eval.json": {"data": scores}}
    return {"rev": rev, "name": name, "data": {"rev": rev, "params": {
        "params.yaml": {"data": params}}, "metrics": metrics}}


def test_only_finished_runs_are_read_and_the_workspace_once():
    """A queued experiment's commit holds its baseline's metrics; a failed one may too."""
    base = params_of()
    scores = {"fid": 6.0, "fid_real": 0.09, "n_samples": 10000, "kid": 0.05, "kid_std": 0.01}
    exps = [{"executor": {"state": state}, "name": name, "revs": [
        show_row(rev, params_of(seed=seed), scores if seed != 3 else {"fid": 5.0})]}
        for name, rev, seed, state in (("q", "1" * 40, 1, "queued"),
                                       ("r", "2" * 40, 2, "running"),
                                       ("f", "3" * 40, 4, "failed"),
                                       ("ok", "4" * 40, 3, "success"))]
    exps.append({"executor": None, "name": "old", "revs": [show_row("5" * 40, base, None)]})
    shown = [show_row("workspace", base, scores),
             dict(show_row("a" * 40, base, scores, name="main"), experiments=exps)]
    runs, notes = runs_from_show(shown)
    assert [(r.name, r.rev, r.params["seed"]) for r in runs] == [("main", "a" * 40, 0),
                                                                 ("ok", "4" * 40, 3)]
    assert runs[0].scores == {"fid": 6.0, "kid": 0.05}  # no floors, n_samples or kid_std
    assert notes == ["q: queued; left out", "r: running; left out", "f: failed; left out",
                     "old: no metrics/eval.json; left out"]
    runs, notes = runs_from_show(shown, workspace_out="workspace: why")
    assert [r.name for r in runs] == ["main", "ok"] and notes[0] == "workspace: why"


def report_of(groups_values: list[list[float]], baseline=None) -> dict:
    runs = [run_of(f"g{g}s{s}", v, seed=s, lr=0.001 * (g + 1))
            for g, values in enumerate(groups_values) for s, v in enumerate(values)]
    groups = group_runs(runs)
    return compare.build_report(groups, ["fid"], baseline)


def test_the_report_compares_every_pair_or_each_against_the_baseline():
    report = report_of([[6.0, 6.2, 6.1], [7.0, 7.3, 7.1], [6.05]])
    assert [(d["group"], d["against"]) for d in report["differences"]] == [(2, 1), (3, 1),
                                                                          (3, 2)]
    assert [d["verdict"] for d in report["differences"]] == ["significant",
                                                             "one seed: no test",
                                                             "one seed: no test"]
    report = report_of([[6.0, 6.2, 6.1], [7.0, 7.3, 7.1], [6.05, 6.3]], baseline=1)
    assert [(d["group"], d["against"]) for d in report["differences"]] == [(1, 2), (3, 2)]
    assert report["baseline"] == 2
    text = compare.format_text(report_of([[6.0, 6.2], [7.0]]))
    assert "one seed: no interval" in text and "differing params: train.lr" in text


def test_json_holds_groups_with_params_n_and_each_scores_mean_and_interval():
    report = json.loads(json.dumps(report_of([[6.0, 6.2, 6.1], [7.0]])))
    first, second = report["groups"]
    assert first["params"] == {"train.lr": 0.001} and first["n"] == 3
    fid = first["scores"]["fid"]
    assert fid["mean"] == pytest.approx(6.1)
    assert fid["interval"] == pytest.approx([6.1 - 4.302653 * 0.1 / math.sqrt(3),
                                             6.1 + 4.302653 * 0.1 / math.sqrt(3)], abs=1e-6)
    assert second["n"] == 1 and second["scores"]["fid"]["interval"] is None
    assert report["test"].startswith("Welch's t") and report["level"] == 0.95


def test_csv_has_a_row_per_group_score_and_per_difference():
    rows = compare.format_csv(report_of([[6.0, 6.2, 6.1], [7.0, 7.05]])).splitlines()
    assert rows[0] == "row,group,against,train.lr,n,metric,value,low,high,sd,df,p,verdict"
    assert rows[1].startswith("mean,1,,0.001,3,fid,6.09999")
    assert rows[3].startswith("difference,2,1,,,fid,") and rows[3].endswith(",significant")


# Faults, round three (docs/faults.md): flagged groups and NaN/inf get no verdict.

def flagged_report(flags_a: dict, flags_b: dict, metric=None, values_b=(7.0, 7.3, 7.1)):
    """Two groups of three runs, the second's FID clearly higher, their eval.json rows read
    as dvc exp show gives them, with ``flags_*`` in every run's eval.json."""
    rows = []
    for g, (values, flags) in enumerate((((6.0, 6.2, 6.1), flags_a), (values_b, flags_b))):
        for s, fid in enumerate(values):
            rows.append(show_row(f"{g}{s}" * 20, params_of(seed=s, lr=0.001 * (g + 1)),
                                 {"fid": fid, "kid": 0.01 * (g + 1) + 0.001 * s,
                                  "precision": 0.5 + 0.1 * g + 0.01 * s, **flags}))
    runs, _ = runs_from_show([dict(rows[0], experiments=[
        {"executor": None, "name": f"e{i}", "revs": [row]} for i, row in enumerate(rows[1:])])])
    groups = group_runs(runs)
    names = compare.score_names(groups, metric)
    return compare.build_report(groups, names)


def verdicts(report) -> dict[str, str]:
    return {d["metric"]: d["verdict"] for d in report["differences"]}


def test_unflagged_groups_get_their_verdicts():
    report = flagged_report({}, {})
    assert verdicts(report) == {"fid": "significant", "kid": "significant",
                                "precision": "significant"}


@pytest.mark.parametrize("metric", [None, ["fid"]])
def test_a_judge_at_chance_withholds_every_verdict_and_is_no_score(metric):
    report = flagged_report({}, {"flag_judge_at_chance": 1}, metric)
    second = report["groups"][1]
    assert second["flags"] == {"flag_judge_at_chance": 3}
    assert "flag_judge_at_chance" not in second["scores"]  # a flag is no score
    assert all(d["significant"] is None and d["p"] is None for d in report["differences"])
    for name, verdict in verdicts(report).items():
        assert verdict == "no verdict: group 2 flagged flag_judge_at_chance (3 of 3 runs)", name
    text = compare.format_text(report)
    assert "FLAGGED: flag_judge_at_chance in 3 of 3 runs" in text and "significant" not in text
    assert "[1, 1]" not in text and "flag_judge_at_chance  " not in text


@pytest.mark.parametrize("flag,metric", [("flag_fid_below_real", "fid"),
                                         ("flag_precision_junk", "precision"),
                                         ("flag_kid_some_future_reason", "kid"),
                                         ("flag_real_precision_low", "precision")])
def test_a_metrics_flag_withholds_that_metrics_verdict_only(flag, metric):
    report = flagged_report({flag: 1}, {})  # in the first group, the baseline side
    got = verdicts(report)
    assert got.pop(metric) == f"no verdict: group 1 flagged {flag} (3 of 3 runs)"
    assert set(got.values()) == {"significant"}
    assert report["groups"][0]["scores"][metric]["flagged"] == [flag]
    assert f"FLAGGED: {flag} in 3 of 3 runs: {metric} gets no verdict" in \
        compare.format_text(report)


def test_a_flag_set_to_0_or_naming_no_metric():
    assert set(verdicts(flagged_report({"flag_fid_below_real": 0}, {})).values()) == \
        {"significant"}
    unknown = verdicts(flagged_report({}, {"flag_something_new": 1}))
    assert all(v.startswith("no verdict: group 2 flagged flag_something_new")
               for v in unknown.values())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_gives_no_verdict_with_the_reason_and_valid_json(bad):
    report = flagged_report({}, {}, values_b=(7.0, bad, 7.1))
    fid = next(d for d in report["differences"] if d["metric"] == "fid")
    assert fid["verdict"] == "no verdict: group 2's fid is NaN or inf in 1 of 3 runs"
    assert fid["difference"] is None and fid["p"] is None and fid["df"] is None
    assert report["groups"][1]["scores"]["fid"]["mean"] is None
    assert report["groups"][1]["scores"]["fid"]["values"] == [7.0, None, 7.1]
    text = json.dumps(report, allow_nan=False)  # raises on NaN or inf
    assert json.loads(text)["groups"][1]["scores"]["fid"]["nonfinite"] == 1
    assert "NaN or inf in 1 of 3 runs: no mean" in compare.format_text(report)
    assert "p 0, df nan" not in compare.format_text(report)
    rows = compare.format_csv(report).splitlines()
    assert any(r.startswith("mean,2,,0.002,3,fid,,") and r.endswith("NaN or inf: no mean")
               for r in rows)


def test_gan_compare_json_is_valid_json_for_nan(monkeypatch, capsys):
    report = flagged_report({}, {}, values_b=(7.0, float("nan"), 7.1))
    monkeypatch.setattr(compare, "build_report", lambda *a: report)
    monkeypatch.setattr(compare, "group_runs", lambda runs: [])
    monkeypatch.setattr(compare, "score_names", lambda groups, wanted: ["fid"])
    monkeypatch.setattr(compare, "read_runs", lambda *a: ([object()], []))
    args = compare._parser().parse_args(["--json"])
    out = compare.compare_command(None, args)
    assert json.loads(out)["groups"][1]["scores"]["fid"]["values"][1] is None


def test_bands_are_mean_and_sd_at_the_steps_every_run_logged():
    one = compare.curve_from_tsv("step\tfid\n3\t10\n6\t8\n", "fid")
    two = compare.curve_from_tsv("step\tfid\n3\t14\n6\t6\n9\t5\n", "fid")
    mean, sd = compare.band([one, two])
    assert mean.to_dict() == {3: 12.0, 6: 7.0}
    assert sd.to_dict() == pytest.approx({3: math.sqrt(8), 6: math.sqrt(2)})
    assert compare.band([one])[1] is None


# ---- the command on a real DVC repository -----------------------------------------------

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}

# (name, seed, train.lr, evaluate.seed, fid): two settings of two seeds, and one run whose
# evaluate.seed differs (a group of its own, of one run). The first is the commit.
SAVED = (("main", 0, 0.001, 0, 6.0), ("s1", 1, 0.001, 0, 6.4), ("lr0", 0, 0.002, 0, 8.0),
         ("lr1", 1, 0.002, 0, 8.3), ("eval1", 0, 0.001, 1, 6.1))


@pytest.fixture(scope="module")
def saved_repo(tmp_path_factory):
    """A git and DVC repository whose HEAD and experiments (``dvc exp save``) hold params,
    metrics/eval.json and a training log written here, and one queued experiment."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("saved")
    env = GIT_IDENTITY
    old, cwd = {k: os.environ.get(k) for k in env}, os.getcwd()
    os.environ.update(env)
    os.chdir(root)  # DVC's in-process experiments read params.yaml relative to the cwd
    try:
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
        Repo.init(str(root)).close()
        (root / "dvc.yaml").write_text("params:\n  - params.yaml\n"
                                       "metrics:\n  - metrics/eval.json\n")
        logs = root / compare.PLOTS_DIR
        logs.mkdir(parents=True)

        def write(seed, lr, evaluate_seed, fid):
            params = params_of(seed=seed, lr=lr, evaluate_seed=evaluate_seed)
            (root / "params.yaml").write_text(yaml.safe_dump(params))
            (root / "metrics" / "eval.json").write_text(json.dumps({"fid": fid, "recall": 0.5,
                                                                    "fid_real": 0.09}))
            (logs / "fid.tsv").write_text(f"step\tfid\n3\t{2 * fid}\n6\t{fid}\n")
            (logs / "d_loss.tsv").write_text(f"step\td_loss\n2\t{seed}\n4\t{lr}\n6\t1\n")

        write(*SAVED[0][1:])
        subprocess.run(["git", "add", "-A"], cwd=root, check=True)
        subprocess.run(["git", "commit", "-qm", "base"], cwd=root, check=True)
        with Repo(str(root)) as repo:
            for name, *values in SAVED[1:]:
                write(*values)
                repo.experiments.save(name=name)
            subprocess.run(["git", "checkout", "-q", "--", "."], cwd=root, check=True)
            repo.experiments.run(queue=True, params=["seed=7"], name="waiting")
    finally:
        os.chdir(cwd)
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return root


def git_state(root) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=root,
                          capture_output=True, text=True, check=True).stdout


def run_main(root, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.chdir(root)
    code = compare.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.integration
def test_the_saved_experiments_group_into_their_settings(saved_repo, monkeypatch, capsys):
    before = git_state(saved_repo)
    code, out, err = run_main(saved_repo, monkeypatch, capsys, "--json")
    assert code == 0 and err == "", err
    report = json.loads(out)
    got = {(g["params"]["train.lr"], g["params"]["evaluate.seed"]): (sorted(g["runs"]), g["n"])
           for g in report["groups"]}
    assert got == {(0.001, 0): (["main", "s1"], 2), (0.002, 0): (["lr0", "lr1"], 2),
                   (0.001, 1): (["eval1"], 1)}
    assert report["differing_params"] == ["evaluate.seed", "train.lr"]
    fid = {g["runs"][0]: g["scores"]["fid"] for g in report["groups"]}
    assert fid["main"]["mean"] == pytest.approx(6.2) and fid["eval1"]["interval"] is None
    assert set(report["groups"][0]["scores"]) == {"fid", "recall"}
    assert "waiting: queued; left out" in report["notes"]
    assert any(n.startswith("workspace: no dvc.lock") for n in report["notes"])
    assert git_state(saved_repo) == before  # nothing written into the repository


@pytest.mark.integration
def test_baseline_metric_and_plot(saved_repo, monkeypatch, capsys, tmp_path):
    png = tmp_path / "bands.png"
    code, out, err = run_main(saved_repo, monkeypatch, capsys, "--baseline", "lr1",
                              "--metric", "fid", "--plot", str(png))
    assert code == 0 and err == "", err
    lines = [line for line in out.splitlines() if line.startswith("group ") and " - " in line]
    lr1 = re.search(r"^group (\d): evaluate.seed=0 train.lr=0.002$", out, re.M).group(1)
    assert len(lines) == 2 and all(f" - group {lr1} " in line for line in lines), out
    assert "recall" not in out and f"note: curves: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open_repo("gan-compare", str(saved_repo)) as repo:  # an experiment's commit's log
        run = next(r for g in group_runs(compare.read_runs(repo)[0]) for r in g.runs
                   if r.name == "lr1")
        assert compare.read_curve(repo, run, "fid").to_dict() == {3: 16.6, 6: 8.3}
        assert compare.read_curve(repo, run, "g_loss") is None


@pytest.mark.parametrize("argv, message", [
    (["--metric", "kid"], "error: --metric kid: no such score in metrics/eval.json of these "
                          "runs; scores: fid, recall\n"),
    (["--baseline", "nobody"], "error: --baseline nobody: no finished run of that name or "
                               "commit; runs: main, "),
])
@pytest.mark.integration
def test_bad_options_are_one_line(saved_repo, monkeypatch, capsys, argv, message):
    code, out, err = run_main(saved_repo, monkeypatch, capsys, *argv)
    assert code == 2 and out == "" and err.startswith(message), err


def test_outside_a_repository_it_says_so(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(tmp_path, monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err == f"error: {tmp_path}: not a DVC repository (no .dvc folder here or above); " \
                  "run gan-compare in the project\n"


# ---- the sweep line of README and the band template of dvc plots -------------------------

@pytest.mark.integration
def test_readmes_sweep_line_queues_each_seed_of_each_setting_and_nothing_else(tmp_path,
                                                                              monkeypatch):
    """README's line, run through DVC's own sweep code: one queued experiment per seed and
    lr, each changing those two keys only. The seed is a param of train alone, so the
    seeds share the prepared data and the judge."""
    from dvc.repo import Repo

    from gan.queue.params import read_params

    line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("dvc exp run --queue -S 'seed=range("))
    argv = shlex.split(line.split("#")[0])
    assert argv[:4] == ["dvc", "exp", "run", "--queue"]
    sets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-S"]
    assert len(argv) == 4 + 2 * len(sets)

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert [name for name, stage in stages.items() if "seed" in stage.get("params", [])] == \
        ["train"]

    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q", "-b", "main"], check=True)
    Repo.init(str(tmp_path)).close()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text("params:\n  - params.yaml\n")
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "commit", "-qm", "base"], check=True)
    with Repo(str(tmp_path)) as repo:
        repo.experiments.run(queue=True, params=sets)
        base = read_params(repo, "HEAD", ["params.yaml"])
        queued = [read_params(repo, entry.stash_rev, ["params.yaml"])
                  for entry in repo.experiments.celery_queue.iter_queued()]
    assert sorted((p["seed"], p["train.lr"]) for p in queued) == \
        [(seed, lr) for seed in (0, 1, 2) for lr in (0.001, 0.0032)]
    for p in queued:
        assert {k for k in base if p[k] != base[k]} <= {"seed", "train.lr"}


def test_the_band_template_fills_as_dvc_fills_it():
    """.dvc/plots/band.json through DVC's renderer: one errorband of mean +- one sd per step
    under the mean line, pooling the revisions (nothing splits them by rev)."""
    from dvc_render import VegaRenderer

    points = [{"step": "3", "fid": "0.4", "rev": "a"}, {"step": "3", "fid": "0.3", "rev": "b"}]
    spec = VegaRenderer(points, "fid.tsv", template="band", template_dir=str(ROOT / ".dvc" /
                        "plots"), x="step", y="fid", title="FID").get_filled_template()
    assert spec["data"]["values"] == points and spec["encoding"]["x"]["field"] == "step"
    band, line = spec["layer"]
    assert band["mark"]["type"] == "errorband" and band["mark"]["extent"] == "stdev"
    assert band["encoding"]["y"]["field"] == "fid"
    assert line["mark"] == "line" and line["encoding"]["y"] == {
        "aggregate": "mean", "field": "fid", "type": "quantitative"}
    assert "rev" not in json.dumps({k: v for k, v in spec.items() if k != "data"})
