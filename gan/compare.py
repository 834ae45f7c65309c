"""``gan-compare``: the experiments' scores grouped by their params, seeds pooled, with 95 %
intervals, and Welch's test between groups.

    gan-compare [--metric NAME]... [--baseline EXP] [--json | --csv] [--plot FILE.png]
                [-a/--all-branches] [-A/--all-commits]

A run is a row of ``dvc exp show``: the workspace, a commit, or a finished experiment. Runs
whose params are the same but for the top-level ``seed`` (the train stage's seed) form a
group; every other key, ``sample.seed``, ``evaluate.seed`` and ``classifier.seed`` among them,
tells groups apart. Per group and score of ``metrics/eval.json``: the mean of its runs and
the 95 % interval of that mean, Student's t with n - 1 degrees of freedom. Between two
groups: the difference of means with its 95 % interval from Welch's t (unequal variances,
Welch-Satterthwaite degrees of freedom), called significant when that interval leaves out
zero (p < 0.05, two-sided); both from scipy.stats. The statistics are pure functions of lists
of numbers; DVC is read only by ``read_runs`` (with ``workspace_note``) and ``read_curve``,
through ``gan.dvc_internals`` (the repository, ``dvc exp show``'s rows, commits' files).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from gan import dvc_internals as dvc
from gan.dvc_internals import flat
from gan.errors import GanError

LEVEL = 0.95  # every interval here is a 95 % interval
SEED_KEY = "seed"  # the train stage's seed: the one param a group's runs may differ in
EVAL_FILE = "metrics/eval.json"
PLOTS_DIR = "metrics/train/plots/metrics"
CURVES = ("fid", "d_loss", "g_loss")  # the panels of --plot, top to bottom
LABELS = {"fid": "FID (during training)", "d_loss": "D loss", "g_loss": "G loss"}
# Numbers of metrics/eval.json that are no score of the run: the floors (real images against
# the test split), the sample count and the spread of KID's subsets.
NOT_SCORES = ("n_samples", "kid_std")
# Keys of metrics/eval.json that are flags, set to 1 when a reading cannot be trusted (see
# gan.metrics.judge_checks): ``flag_judge_...`` withholds every verdict of the run's group,
# ``flag_<metric>_...`` (or ``flag_real_<metric>_...``, about the metric's floor) that
# metric's; a flag naming no metric withholds every verdict too.
FLAG_PREFIX = "flag_"
JUDGE_FLAG = "flag_judge_"
TEST = "Welch's t test (Welch-Satterthwaite df), two-sided, 5 %"


# ---- statistics: pure functions of numbers -------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """n values: their mean, standard deviation (n - 1) and the 95 % interval of the mean."""

    n: int
    mean: float
    sd: float | None  # None for one value
    interval: tuple[float, float] | None  # None for one value


def summarise(values: list[float]) -> Summary:
    """Mean and Student's t interval of the mean (n - 1 degrees of freedom)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to summarise")
    mean = float(x.mean())
    if x.size == 1:
        return Summary(1, mean, None, None)
    sd = float((x - x[0]).std(ddof=1))  # shifted: equal values give 0, not 1e-17
    half = float(stats.t.ppf((1 + LEVEL) / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return Summary(int(x.size), mean, sd, (mean - half, mean + half))


@dataclass(frozen=True)
class Difference:
    """mean(b) - mean(a), its 95 % interval, Welch's df and two-sided p, and the verdict."""

    difference: float
    interval: tuple[float, float] | None
    df: float | None
    p: float | None
    significant: bool | None  # None: no test (a group of one)
    verdict: str


def welch(a: list[float], b: list[float]) -> Difference:
    """Welch's t test of mean(b) - mean(a); significant when the 95 % interval leaves out 0."""
    sa, sb = summarise(a), summarise(b)
    diff = sb.mean - sa.mean
    if sa.n < 2 or sb.n < 2:
        return Difference(diff, None, None, None, None, "one seed: no test")
    va, vb = sa.sd ** 2 / sa.n, sb.sd ** 2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0:  # every run of both groups scored the same: nothing to weigh a gap against
        same = diff == 0
        return Difference(diff, (diff, diff), None, 1.0 if same else 0.0, not same,
                          "no spread in either group: " + ("same" if same else "differ"))
    test = stats.ttest_ind(b, a, equal_var=False)  # Welch's t, Welch-Satterthwaite df
    low, high = test.confidence_interval(LEVEL)
    significant = bool(low > 0 or high < 0)
    return Difference(diff, (float(low), float(high)), float(test.df), float(test.pvalue),
                      significant, "significant" if significant else "not significant")


# ---- runs and groups ---------------------------------------------------------------------

@dataclass
class Run:
    """One row of dvc exp show: its name, commit (None: the workspace), params and scores."""

    name: str
    rev: str | None
    params: dict[str, object]  # flat: "train.lr"; files past params.yaml as "file:key"
    scores: dict[str, float]
    flags: list[str] = field(default_factory=list)  # the flag_* keys of eval.json set to 1


@dataclass
class Group:
    """Runs whose params agree on every key but the training seed."""

    params: dict[str, object]  # every key but the seed
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list:
        return [run.params.get(SEED_KEY) for run in self.runs]


def _file_data(files: dict | None, name: str) -> dict | None:
    """The parsed content of one file of a row's params or metrics, None if absent or broken."""
    entry = (files or {}).get(name) or {}
    return entry.get("data") if isinstance(entry.get("data"), dict) else None


def run_params(params: dict | None) -> dict[str, object]:
    """A row's params, flat; params.yaml's keys bare, other files' as ``file:key``."""
    out = {}
    for name in sorted(params or {}, key=lambda n: (n != "params.yaml", n)):
        data = _file_data(params, name)
        prefix = "" if name == "params.yaml" else f"{name}:"
        out.update((prefix + key, value) for key, value in flat(data or {}).items())
    return out


def run_scores(metrics: dict | None) -> dict[str, float] | None:
    """The scores of metrics/eval.json (no floors, sample count or KID's spread); None if
    the row has no such file."""
    data = _file_data(metrics, EVAL_FILE)
    if data is None:
        return None
    return {key: float(value) for key, value in flat(data).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and not key.endswith("_real") and key not in NOT_SCORES
            and not key.startswith(FLAG_PREFIX)}


def run_flags(metrics: dict | None) -> list[str]:
    """The flags of metrics/eval.json that are set (any value but 0, false or missing)."""
    data = _file_data(metrics, EVAL_FILE) or {}
    return sorted(key for key, value in flat(data).items()
                  if key.startswith(FLAG_PREFIX) and value not in (0, None, False))


def flagged_metric(flag: str, metrics: list[str]) -> str | None:
    """The metric whose verdict ``flag`` withholds; None for every metric (a judge's flag,
    or one that names no metric of ``metrics``)."""
    if flag.startswith(JUDGE_FLAG):
        return None
    rest = flag.removeprefix(FLAG_PREFIX)
    for text in (rest, rest.removeprefix("real_")):
        found = [m for m in metrics if text == m or text.startswith(m + "_")]
        if found:
            return max(found, key=len)
    return None


def runs_from_show(shown: list[dict], workspace_out: str | None = None
                   ) -> tuple[list[Run], list[str]]:
    """The finished runs of ``dvc exp show --json``'s rows, and a note per row left out.

    Left out: queued, running and failed experiments (a queued one's commit still holds its
    baseline's metrics), rows without metrics/eval.json, the workspace when it has not run
    its params (``workspace_out`` says why), and a row whose params and scores repeat an earlier
    row's (the workspace after ``dvc exp run`` is also that experiment)."""
    runs, notes, seen = [], [], {}

    def take(row: dict, name: str, rev: str | None) -> None:
        data = row.get("data") or {}
        scores = run_scores(data.get("metrics"))
        if scores is None:
            notes.append(f"{name}: no {EVAL_FILE}; left out")
            return
        params = run_params(data.get("params"))
        flags = run_flags(data.get("metrics"))
        key = json.dumps([params, scores, flags], sort_keys=True, default=str)
        if key not in seen:
            seen[key] = Run(name, rev, params, scores, flags)
            runs.append(seen[key])
        elif seen[key].rev is None:  # the workspace repeats a commit: name it by the commit
            seen[key].name, seen[key].rev = name, rev

    for baseline in shown:
        rev = baseline.get("rev")
        if rev == "workspace":
            if workspace_out is None:
                take(baseline, "workspace", None)
            else:
                notes.append(workspace_out)
        elif rev:
            take(baseline, baseline.get("name") or rev[:7], rev)
        for exp in baseline.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            for row in exp.get("revs") or []:
                name = row.get("name") or exp.get("name") or row["rev"][:7]
                if state in (None, "success"):
                    take(row, name, row["rev"])
                else:
                    notes.append(f"{name}: {state}; left out")
    return runs, notes


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by every param but the training seed, in the order they first appear;
    within a group by seed."""
    groups: dict[str, Group] = {}
    for run in runs:
        params = {k: v for k, v in run.params.items() if k != SEED_KEY}
        groups.setdefault(_key(params), Group(params)).runs.append(run)
    for group in groups.values():  # by seed where every seed is a number
        if all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in group.seeds):
            group.runs.sort(key=lambda run: run.params.get(SEED_KEY))
    return list(groups.values())


def differing(groups: list[Group]) -> list[str]:
    """The keys whose value is not the same in every group (missing counts as a value)."""
    keys = sorted({k for g in groups for k in g.params})
    return [k for k in keys if len({_key(g.params.get(k, "<unset>")) for g in groups}) > 1]


def show_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def label(group: Group, keys: list[str]) -> str:
    """``train.lr=0.001 model.arch=mlp``: the group's values of the keys that differ."""
    return " ".join(f"{k}={show_value(group.params.get(k, '<unset>'))}" for k in keys) \
        or "(one group: every run shares its params but the seed)"


# ---- the report ----------------------------------------------------------------------------

def score_names(groups: list[Group], wanted: list[str] | None) -> list[str]:
    """The scores to report: those of the runs, in metrics/eval.json's order, or ``wanted``."""
    names = list(dict.fromkeys(name for g in groups for run in g.runs for name in run.scores))
    for name in wanted or []:
        if name not in names:
            raise GanError(f"--metric {name}: no such score in {EVAL_FILE} of these runs; "
                           f"scores: {', '.join(names) or 'none'}")
    return list(dict.fromkeys(wanted)) if wanted else names


def pick_baseline(groups: list[Group], name: str) -> int:
    """The index of the group holding the run named ``name`` (its name, or a commit prefix)."""
    for i, group in enumerate(groups):
        for run in group.runs:
            if name == run.name or (run.rev and len(name) >= 4 and run.rev.startswith(name)):
                return i
    runs = ", ".join(run.name for g in groups for run in g.runs)
    raise GanError(f"--baseline {name}: no finished run of that name or commit; runs: {runs}")


def _interval(pair: tuple[float, float] | None) -> list[float] | None:
    return list(pair) if pair else None


def group_entry(number: int, group: Group, keys: list[str], names: list[str],
                metrics: list[str] | None = None) -> dict:
    """One group of the report: its differing params, runs, seeds, flags (with how many runs
    set each) and per score the mean with its interval (no interval for one run). A score
    some run has as NaN or inf has no mean ("nonfinite": how many); one a flag withholds
    the verdict of lists the flags ("flagged"). ``metrics``: every score name of the runs,
    to read the flags by (default ``names``)."""
    flags = {}
    for run in group.runs:
        for flag in run.flags:
            flags[flag] = flags.get(flag, 0) + 1
    metrics = names if metrics is None else metrics
    scores = {}
    for name in names:
        values = [run.scores[name] for run in group.runs if name in run.scores]
        if not values:
            continue
        bad = sum(not math.isfinite(v) for v in values)
        if bad:  # NaN and inf are no JSON numbers, and no mean of them means anything
            entry = {"n": len(values), "mean": None, "sd": None, "interval": None,
                     "values": [v if math.isfinite(v) else None for v in values],
                     "nonfinite": bad}
        else:
            s = summarise(values)
            entry = {"n": s.n, "mean": s.mean, "sd": s.sd, "interval": _interval(s.interval),
                     "values": values}
        withheld = [f for f in flags if flagged_metric(f, metrics) in (None, name)]
        if withheld:
            entry["flagged"] = withheld
        scores[name] = entry
    return {"group": number, "label": label(group, keys),
            "params": {k: group.params.get(k) for k in keys}, "n": len(group.runs),
            "seeds": group.seeds, "runs": [run.name for run in group.runs], "flags": flags,
            "scores": scores}


def _no_verdict(group: dict, name: str) -> list[str]:
    """Why ``group``'s ``name`` cannot be compared: its flags, its NaN or inf."""
    score = group["scores"][name]
    reasons = [f"group {group['group']} flagged {flag} ({group['flags'][flag]} of "
               f"{group['n']} runs)" for flag in score.get("flagged", [])]
    if score.get("nonfinite"):
        reasons.append(f"group {group['group']}'s {name} is NaN or inf in "
                       f"{score['nonfinite']} of {score['n']} runs")
    return reasons


def compare_entry(a: dict, b: dict, name: str) -> dict | None:
    """Group b's mean minus group a's for one score, with Welch's interval and verdict; no
    verdict (and no interval or test) where either group is flagged or holds NaN or inf."""
    if name not in a["scores"] or name not in b["scores"]:
        return None
    reasons = _no_verdict(a, name) + _no_verdict(b, name)
    if reasons:
        means = (a["scores"][name]["mean"], b["scores"][name]["mean"])
        difference = None if None in means else means[1] - means[0]
        return {"group": b["group"], "against": a["group"], "metric": name,
                "difference": difference, "interval": None, "df": None, "p": None,
                "significant": None, "verdict": "no verdict: " + "; ".join(reasons)}
    d = welch(a["scores"][name]["values"], b["scores"][name]["values"])
    return {"group": b["group"], "against": a["group"], "metric": name,
            "difference": d.difference, "interval": _interval(d.interval), "df": d.df,
            "p": d.p, "significant": d.significant, "verdict": d.verdict}


def repeated_seeds(number: int, group: Group) -> list[str]:
    """A note per seed that ran more than once in a group (another machine, other code):
    each run counts, and the spread is then not the seed's alone."""
    seeds = [_key(seed) for seed in group.seeds]
    return [f"group {number}: seed {seed} ran {seeds.count(seed)} times with different scores; "
            "each run counts" for seed in dict.fromkeys(seeds) if seeds.count(seed) > 1]


def build_report(groups: list[Group], names: list[str], baseline: int | None = None,
                 notes: list[str] | None = None) -> dict:
    """What gan-compare prints, as one object: groups, then differences (each group against
    the baseline group, or every pair), then notes."""
    keys = differing(groups)
    metrics = list(dict.fromkeys(name for g in groups for run in g.runs for name in run.scores))
    entries = [group_entry(i + 1, g, keys, names, metrics) for i, g in enumerate(groups)]
    if baseline is None:
        pairs = [(a, b) for i, a in enumerate(entries) for b in entries[i + 1:]]
    else:
        pairs = [(entries[baseline], b) for b in entries if b is not entries[baseline]]
    differences = [c for a, b in pairs for name in names if (c := compare_entry(a, b, name))]
    notes = list(notes or [])
    for i, g in enumerate(groups):
        notes += repeated_seeds(i + 1, g)
    return {"level": LEVEL, "interval": "of the mean, Student's t (n - 1 df)", "test": TEST,
            "seed_key": SEED_KEY, "differing_params": keys,
            "baseline": None if baseline is None else baseline + 1,
            "groups": entries, "differences": differences, "notes": notes}


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _withholds(flag: str, group: dict) -> str:
    """What a flag of ``group`` withholds, in words."""
    named = {name for name, s in group["scores"].items() if flag in s.get("flagged", [])}
    if named and named == set(group["scores"]) and len(named) > 1:
        return "no score of this group gets a verdict"
    return ", ".join(sorted(named)) + " gets no verdict" if named else "no score shown here"


def format_text(report: dict) -> str:
    """The report as a table per group and one line per difference."""
    groups = report["groups"]
    runs = sum(g["n"] for g in groups)
    lines = [f"gan-compare: {runs} run{'s' * (runs != 1)} in {len(groups)} group"
             f"{'s' * (len(groups) != 1)} (params equal but {report['seed_key']})",
             f"intervals: 95 %, {report['interval']}; differences: {report['test']}",
             "differing params: " + (", ".join(report["differing_params"]) or "none")]
    width = max([len(m) for g in groups for m in g["scores"]] + [6])
    for g in groups:
        seeds = ", ".join(show_value(s) for s in g["seeds"])
        lines += ["", f"group {g['group']}: {g['label']}",
                  f"  n={g['n']}  seeds {seeds}  runs {', '.join(g['runs'])}"]
        lines += [f"  FLAGGED: {flag} in {count} of {g['n']} runs: "
                  f"{_withholds(flag, g)}" for flag, count in g["flags"].items()]
        for name, s in g["scores"].items():
            spread = (f"[{_num(s['interval'][0])}, {_num(s['interval'][1])}]  sd {_num(s['sd'])}"
                      if s["interval"] else
                      f"NaN or inf in {s['nonfinite']} of {s['n']} runs: no mean"
                      if s.get("nonfinite") else "one seed: no interval")
            mark = "  (flagged: no verdict)" if s.get("flagged") else ""
            lines.append(f"  {name:<{width}}  {_num(s['mean']):>10}  {spread}{mark}")
    if report["differences"]:
        lines.append("")
    for d in report["differences"]:
        spread = f"[{_num(d['interval'][0])}, {_num(d['interval'][1])}]" if d["interval"] else ""
        test = f"  (p {d['p']:.3g}, df {d['df']:.3g})" if d["df"] is not None else ""
        lines.append(f"group {d['group']} - group {d['against']}  {d['metric']:<{width}}  "
                     f"{_num(d['difference']):>10}  {spread:<24} {d['verdict']}{test}")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def format_csv(report: dict) -> str:
    """One row per group and score, then one per difference; the differing params as
    columns of the group rows."""
    keys = report["differing_params"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "group", "against", *keys, "n", "metric", "value", "low", "high",
                     "sd", "df", "p", "verdict"])
    for g in report["groups"]:
        params = [show_value(g["params"][k]) for k in keys]
        for name, s in g["scores"].items():
            low, high = s["interval"] or ("", "")
            note = ("flagged: " + ", ".join(s["flagged"]) if s.get("flagged") else
                    "NaN or inf: no mean" if s.get("nonfinite") else
                    "" if s["interval"] else "one seed: no interval")
            writer.writerow(["mean", g["group"], "", *params, s["n"], name,
                             "" if s["mean"] is None else s["mean"], low, high,
                             "" if s["sd"] is None else s["sd"], "", "", note])
    for d in report["differences"]:
        low, high = d["interval"] or ("", "")
        writer.writerow(["difference", d["group"], d["against"], *[""] * len(keys), "",
                         d["metric"], "" if d["difference"] is None else d["difference"], low,
                         high, "",
                         "" if d["df"] is None else d["df"], "" if d["p"] is None else d["p"],
                         d["verdict"]])
    return out.getvalue()


# ---- curves with bands ---------------------------------------------------------------------

def curve_from_tsv(text: str, name: str) -> pd.Series:
    """dvclive's ``<name>.tsv`` (columns step and name) as a series indexed by step."""
    frame = pd.read_csv(io.StringIO(text), sep="\t")
    if "step" not in frame or name not in frame:
        raise GanError(f"{name}.tsv: expected columns step and {name}")
    return frame.set_index("step")[name].astype(float)


def band(series: list) -> tuple:
    """Mean and standard deviation (n - 1) at the steps every run logged; sd None for one."""
    table = pd.concat(series, axis=1, join="inner")
    return table.mean(axis=1), (table.std(axis=1, ddof=1) if table.shape[1] > 1 else None)


def band_figure(curves: list[tuple[str, list[dict]]], dpi: int = 100):
    """One panel per curve of CURVES against step; per group (label, one {curve: series}
    per run) its mean as a line and mean +- one standard deviation as a band."""
    from gan.plots import plt

    fig, axes = plt.subplots(len(CURVES), 1, figsize=(8, 3 * len(CURVES)), sharex=True, dpi=dpi)
    for i, (text, runs) in enumerate(curves):
        colour = f"C{i % 10}"
        for ax, name in zip(axes, CURVES, strict=True):
            series = [run[name] for run in runs if name in run]
            if not series:
                continue
            mean, sd = band(series)
            ax.plot(mean.index, mean.values, color=colour, label=f"{text} (n={len(series)})")
            if sd is not None:
                ax.fill_between(mean.index, mean - sd, mean + sd, color=colour, alpha=0.2,
                                linewidth=0)
    for ax, name in zip(axes, CURVES, strict=True):
        ax.set_ylabel(LABELS[name])
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("generator step")
    fig.suptitle("Mean over seeds (line) and mean \u00b1 one standard deviation (band)")
    # The groups' labels (every differing param) go under the panels, wrapped, where a long
    # label cannot run off the figure's edge; the figure grows by their lines.
    handles, texts = axes[0].get_legend_handles_labels()
    wrapped = [textwrap.fill(text, 95, subsequent_indent="    ") for text in texts]
    legend_in = 0.3 + 0.17 * sum(text.count("\n") + 1 for text in wrapped)
    height = 3 * len(CURVES) + legend_in
    fig.set_size_inches(8, height)
    fig.legend(handles, wrapped, loc="lower left", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))
    return fig


# ---- reading DVC ---------------------------------------------------------------------------

def workspace_note(repo, params: dict[str, object]) -> str | None:
    """Why the workspace's metrics are not its params' (None: they are): no dvc.lock, or a
    param dvc.lock ran with that params.yaml now sets otherwise (after ``git checkout
    params.yaml`` the metrics are still the last experiment's)."""
    lock = Path(repo.root_dir) / "dvc.lock"
    if not lock.is_file():
        return "workspace: no dvc.lock, nothing ran here; left out"
    for stage in (dvc.load_yaml(lock).get("stages") or {}).values():
        for name, values in (stage.get("params") or {}).items():
            prefix = "" if name == "params.yaml" else f"{name}:"
            for key, value in flat(values).items():
                if _key(params.get(prefix + key, "<unset>")) != _key(value):
                    return (f"workspace: {prefix}{key} is not what dvc.lock ran with (changed "
                            "since the last run); left out")
    return None


def read_runs(repo, all_branches: bool = False, all_commits: bool = False):
    """The finished runs ``dvc exp show`` lists (HEAD and its experiments by default), and a
    note per row left out."""
    rows = dvc.show_rows(repo, all_branches, all_commits)
    workspace = next((row for row in rows if row.get("rev") == "workspace"), {})
    why = workspace_note(repo, run_params((workspace.get("data") or {}).get("params")))
    return runs_from_show(rows, workspace_out=why)


def read_curve(repo, run: Run, name: str):
    """A run's logged curve ``name`` (None if it logged none): from the workspace, or from
    its commit, where every experiment keeps it (the log is cache: false, so git holds it)."""
    path = f"{PLOTS_DIR}/{name}.tsv"
    if run.rev is None:
        file = Path(repo.root_dir) / path
        return curve_from_tsv(file.read_text(), name) if file.is_file() else None
    text = dvc.read_text(repo, run.rev, path)
    return curve_from_tsv(text, name) if text is not None else None


def plot(repo, groups: list[Group], keys: list[str], path: Path) -> None:
    """--plot: the curves with bands, written atomically to ``path``."""
    from gan.io import check_folder, check_target
    from gan.plots import save_figure

    if path.is_dir():
        raise GanError(f"{path}: is a folder; --plot writes one PNG, name a file")
    check_target(path)
    check_folder(path.parent, parents=False)  # a user's path: its folders are not ours
    curves = [(label(group, keys), [{name: s for name in CURVES
                                     if (s := read_curve(repo, run, name)) is not None}
                                    for run in group.runs]) for group in groups]
    if not any(run for _, runs in curves for run in runs):
        raise GanError(f"--plot: no run has a training log in {PLOTS_DIR}/ ({', '.join(CURVES)})")
    save_figure(band_figure(curves), path, parents=False)


# ---- the command ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-compare", epilog="Details: docs/experiments.md",
        description="Scores of metrics/eval.json per group of experiments (params equal but "
                    "the training seed): mean and 95 %% interval per group, and the "
                    "difference between groups with Welch's t test.")
    p.add_argument("--metric", action="append", default=None,
                   help="only this score (repeat for more; default: every score)")
    p.add_argument("--baseline", default=None,
                   help="compare each group with the group of this run (experiment name, "
                        "commit, HEAD or workspace) instead of every pair")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object")
    out.add_argument("--csv", action="store_true", help="the table as CSV")
    p.add_argument("--plot", type=Path, default=None,
                   help="also draw training FID and losses against step, mean and band per "
                        "group, into this PNG")
    p.add_argument("-a", "--all-branches", action="store_true",
                   help="every branch's experiments, as dvc exp show -a")
    p.add_argument("-A", "--all-commits", action="store_true",
                   help="every commit's experiments, as dvc exp show -A")
    return p


def compare_command(repo, args: argparse.Namespace) -> str:
    """Read the runs, group them, and return the report in the asked-for form."""
    if args.plot:  # refused before DVC is asked for the runs
        from gan.io import check_folder, check_target

        check_target(args.plot)
        check_folder(args.plot.parent, parents=False)
    runs, notes = read_runs(repo, args.all_branches, args.all_commits)
    if not runs:
        raise GanError(f"{repo.root_dir}: no finished run with {EVAL_FILE} in dvc exp show"
                       + (f" ({'; '.join(notes)})" if notes else ""))
    groups = group_runs(runs)
    names = score_names(groups, args.metric)
    name = dvc.head(repo) if args.baseline == "HEAD" else args.baseline
    baseline = pick_baseline(groups, name) if name else None
    report = build_report(groups, names, baseline, notes)
    if args.plot:
        plot(repo, groups, report["differing_params"], args.plot)
        report["notes"].append(f"curves: {args.plot}")
    if args.json:  # NaN and inf are None in the report: allow_nan=False holds it to JSON
        return json.dumps(report, indent=1, allow_nan=False)
    return format_csv(report).rstrip("\n") if args.csv else format_text(report)


def main(argv: list[str] | None = None) -> int:
    """The console script: one-line errors and exit code 2 for what the user can fix."""
    args = _parser().parse_args(argv)
    dvc.quiet_logging()
    said = dvc.dvc_errors()
    try:
        with dvc.open_repo("gan-compare") as repo:
            print(compare_command(repo, args), flush=True)
    except BrokenPipeError:  # `| head` read what it wanted: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (GanError, *said) as exc:
        if os.environ.get("GAN_DEBUG") == "1":
            raise
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
