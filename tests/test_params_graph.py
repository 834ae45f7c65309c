"""Which stages a change of each params key re-runs, held to docs/params_graph.md's table.

That page's section "What re-runs when you change a key" is the one statement of it: a row
per key (or group of keys), the stages that read the key, then the stages downstream of
them. Here every key of params.yaml is changed in turn in a copy of the repo, and the
stages `dvc status` reports with changed params must be exactly the row's first stages;
the downstream ones must be what `dvc dag` puts after them.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from gan import data

from conftest import ROOT, copy_project, shell_env, spec_for, tiny_split, write_idx_mirror

SECTION = "What re-runs when you change a key"
TABLE_PAGE = "docs/params_graph.md"
PARAMS = "params.yaml"

# The committed dvc.lock records each stage's params as the last run saw them, under the
# params lists dvc.yaml had then. Once a list changes (a key added or dropped, a section
# split into keys), `dvc status` reports the listed keys as "new" or "deleted" whatever
# their values, so a change to one of them goes unseen until the pipeline is re-run.
# `dvc commit -f` would re-record them, but it refuses while outputs are missing, and a
# copy of the repo has none. So DVC itself re-records the copy's params in its lock, as
# `dvc repro` records them (each params dep saved, each stage dumped to the lock; outputs
# keep their recorded hashes), and the test first checks that the unchanged params then
# show no change at all.
RECORD_PARAMS = """
from dvc.repo import Repo

with Repo(".") as repo, repo.lock:
    for stage in repo.index.stages:
        for dep in stage.params:
            dep.save()
        stage.dump(update_pipeline=False)
"""


# --- the table --------------------------------------------------------------------------

def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def readme_table() -> list[tuple[list[str], list[str], list[str]]]:
    """(keys, stages that read them, stages downstream) of each row of the table."""
    lines = (ROOT / TABLE_PAGE).read_text().splitlines()
    heading = [i for i, line in enumerate(lines)
               if re.fullmatch(rf"#+ {re.escape(SECTION)}\s*", line)]
    assert len(heading) == 1, f"{TABLE_PAGE} needs one section titled {SECTION!r}"
    table: list[str] = []
    for line in lines[heading[0] + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    assert len(table) > 2, f"{TABLE_PAGE}: no table under {SECTION!r}"
    rows = []
    for line in table[2:]:  # after the header and its |---| line
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append((ticked(cells[0]), ticked(cells[1]), ticked(cells[2])))
    return rows


def leaf_keys(params: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every value that is not a section (a list, train.betas, is one key)."""
    keys = []
    for name, value in params.items():
        if isinstance(value, dict):
            keys += leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def stage_names() -> list[str]:
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def expected() -> dict[str, tuple[set[str], set[str]]]:
    """{key: (stages that read it, stages downstream)} as the table says."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    for keys, reads, then in readme_table():
        for key in keys:
            assert key not in out, f"{TABLE_PAGE}: {key} has two rows"
            out[key] = (set(reads), set(then))
    return out


def test_readme_table_has_a_row_for_every_params_key_and_no_other():
    keys = set(leaf_keys(yaml.safe_load((ROOT / PARAMS).read_text())))
    table = expected()
    without_row = sorted(keys - set(table))
    assert not without_row, f"params.yaml keys without a row in {TABLE_PAGE}"
    unknown = sorted(set(table) - keys)
    assert not unknown, f"{TABLE_PAGE} has rows for keys params.yaml lacks"
    stages = set(stage_names())
    for key, (reads, then) in table.items():
        not_stages = sorted((reads | then) - stages)
        assert not not_stages, f"{TABLE_PAGE}, {key}: not stages of dvc.yaml"


# --- DVC on a copy of the repo -----------------------------------------------------------

def sh(repo: Path, *cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=repo, env=shell_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("params_graph"))
    sh(repo, "git", "init", "-q")
    sh(repo, "python", "-c", RECORD_PARAMS)
    return repo


def changed(value: Any) -> Any:
    """Another value of the same kind (dvc status compares values, it does not check them)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_x"
    if value is None:
        return 1
    if isinstance(value, list):
        return [changed(value[0]), *value[1:]] if value else [1]
    raise TypeError(f"no other value for {value!r}")


def with_key_changed(params: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(params)
    *sections, name = key.split(".")
    parent = out
    for section in sections:
        parent = parent[section]
    parent[name] = changed(parent[name])
    return out


def params_changes(repo: Path) -> dict[str, list[str]]:
    """{stage: its params entries (keys or sections) that differ from dvc.lock}.

    DVC's status (what `dvc status --json` prints) puts them under "changed deps" ->
    "params.yaml". The rest of its report is ignored: file deps, and outputs, all missing
    from a fresh copy.
    """
    from dvc.repo import Repo  # in this process: a `dvc status` per key would cost its start

    with contextlib.chdir(repo), Repo(".") as dvc_repo:  # stages named as from the repo
        status = dvc_repo.status()
    out: dict[str, list[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            changes = entry.get("changed deps", {}) if isinstance(entry, dict) else {}
            if isinstance(changes.get(PARAMS), dict):
                out.setdefault(stage, []).extend(changes[PARAMS])
    return out


@pytest.mark.e2e  # DVC's status once per key
def test_dvc_status_reruns_exactly_the_stages_that_read_each_key(repo):
    params = yaml.safe_load((repo / PARAMS).read_text())
    table = expected()

    def write(values: dict[str, Any]) -> None:
        (repo / PARAMS).write_text(yaml.safe_dump(values, sort_keys=False))

    write(params)  # the same values, written the way the changed ones will be
    assert params_changes(repo) == {}, "the unchanged params differ from the copy's dvc.lock"
    wrong = []
    for key in leaf_keys(params):
        write(with_key_changed(params, key))
        changes = params_changes(repo)
        # Each reported entry is the key itself or the section holding it.
        assert all(key == name or key.startswith(name + ".")
                   for names in changes.values() for name in names), (key, changes)
        reads = table.get(key, (set(), set()))[0]
        if set(changes) != reads:
            wrong.append(f"{key}: dvc status re-runs {sorted(changes) or 'nothing'}, "
                         f"the table says {sorted(reads) or 'nothing'}")
    write(params)
    assert not wrong, f"dvc.yaml's params and {TABLE_PAGE} disagree:\n" + "\n".join(wrong)


@pytest.mark.integration
def test_downstream_stages_are_those_after_the_readers_in_dvc_dag(repo):
    after: dict[str, set[str]] = {stage: set() for stage in stage_names()}
    for upstream, downstream in re.findall(r'"([^"]+)" -> "([^"]+)"',
                                           sh(repo, "dvc", "dag", "--dot")):
        after[upstream].add(downstream)

    def descendants(stages: set[str]) -> set[str]:
        found: set[str] = set()
        todo = list(stages)
        while todo:
            for stage in after[todo.pop()] - found:
                found.add(stage)
                todo.append(stage)
        return found

    for key, (reads, then) in expected().items():
        assert then == descendants(reads) - reads, \
            f"{TABLE_PAGE}, {key}: downstream of {sorted(reads)} is " \
            f"{sorted(descendants(reads) - reads)}, the table says {sorted(then)}"


# --- a key added to a section ----------------------------------------------------------------

def rerun_stages(repo: Path) -> set[str]:
    """The stages dvc status finds changed by an edit: a dep that is in the copy (a code
    file) changed, or params that differ from dvc.lock. A fresh copy has no outputs and no
    data deps, which dvc status reports missing: those are left out."""
    from dvc.repo import Repo

    with contextlib.chdir(repo), Repo(".") as dvc_repo:
        status = dvc_repo.status()
    found = set()
    for stage, entries in status.items():
        for entry in entries:
            changes = entry.get("changed deps", {}) if isinstance(entry, dict) else {}
            if PARAMS in changes or any((repo / path).exists() for path in changes):
                found.add(stage)
    return found


@pytest.mark.integration
def test_a_key_added_to_train_leaves_the_data_stages_up_to_date(tmp_path):
    """README's way to add a train key (a field of TrainConfig, its line in params.yaml)
    re-runs train and what follows at most, never download, prepare or classifier."""
    repo = copy_project(tmp_path / "repo")
    sh(repo, "git", "init", "-q")
    sh(repo, "python", "-c", RECORD_PARAMS)
    assert rerun_stages(repo) == set(), "the copy differs from dvc.lock before any edit"
    section = repo / "gan" / "sections" / "train.py"
    text = section.read_text()
    last = "    augment: tuple[str, ...] | None = opt((), recorded_when_off=False)\n"
    assert last in text
    section.write_text(text.replace(last, last + "    warmup_steps: int = opt(0, min=0, "
                                                 "recorded_when_off=False)\n"))
    params = yaml.safe_load((repo / PARAMS).read_text())
    params["train"]["warmup_steps"] = 0
    (repo / PARAMS).write_text(yaml.safe_dump(params, sort_keys=False))
    read = sh(repo, "python", "-c", "from gan.config import load_section, read_params; "
              "print(load_section(read_params('params.yaml'), 'train').warmup_steps)")
    assert read.strip() == "0"  # the key is one: the copy reads it
    found = rerun_stages(repo)
    assert "train" in found and found <= {"train", "sample", "plot", "evaluate"}, found


# --- the keys dvc.yaml leaves out because they cannot change an output --------------------

@pytest.mark.integration
def test_checkpoint_every_leaves_every_train_output_byte_identical(tmp_path, params):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    torch.save(tiny_split(), prepared / "train.pt")
    params["model"].update(arch="mlp", latent_dim=8, g_channels=8, d_channels=8)
    params["train"].update(steps=4, log_every=1, batch_size=16, device="cpu", eval_every=0,
                           snapshot_every=2)
    runs = {}
    for every in (1, 0):  # resumable state saved after every step, or never
        out = tmp_path / f"every_{every}"
        out.mkdir()
        path = tmp_path / f"params_{every}.yaml"
        path.write_text(
            yaml.safe_dump({**params, "resume": {"checkpoint_every": every}}))
        runs[out] = subprocess.Popen(
            [sys.executable, "-m", "stages.train", "--params", str(path), "--data", str(prepared),
             "--checkpoint", str(out / "gan.pt"), "--log-dir", str(out / "live"),
             "--evolution", str(out / "evolution"), "--resume", str(tmp_path / f"{every}.pt")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # the same fingerprint: side by side, each needs a resume store of its own
            env={**os.environ, "GAN_RESUME_STORE": str(tmp_path / f"store_{every}")})
    written = []
    for out, proc in runs.items():
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        written.append({p.relative_to(out): p.read_bytes()
                        for p in sorted(out.rglob("*")) if p.is_file()})
    assert Path("gan.pt") in written[0] and Path("evolution/step_000004.png") in written[0]
    assert written[0] == written[1]


def test_data_mirror_leaves_the_raw_files_byte_identical(tmp_path, monkeypatch):
    contents = write_idx_mirror(tmp_path / "gzipped")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, blob in contents.items():
        (plain / name).write_bytes(blob)
    monkeypatch.setitem(data.DATASETS, "fashion_mnist", spec_for(contents))
    written = []
    for mirror in ("gzipped", "plain"):
        out = tmp_path / f"raw_{mirror}"
        data.download("fashion_mnist", out, str(tmp_path / mirror))
        written.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert len(written[0]) == 4 and written[0] == written[1]
