"""DVC's internals behind one door: gan/dvc_internals.py names every name of DVC it uses, the
installed DVC has each one (else one line per name it lacks), pyproject.toml bounds dvc to
the releases this passed on, and no other module of gan/ or stages/ imports DVC or reaches
into its queue.

What counts as reaching in, outside the door: importing ``dvc`` or any ``dvc.*`` module
(``dvc.api`` and ``dvc.repo.Repo`` included: one door, so the list below stays whole), or the
libraries DVC runs its queue with (``dvc_task``, ``celery``, ``kombu``, ``scmrepo``);
using an attribute of DVC's that it does not document (``_iter_processed``, ``pid_dir``,
...: the names of ``PRIVATE_ATTRS``); and naming DVC's ``.dvc/tmp/exps`` folder in code.
``dvclive`` stays allowed anywhere: ``Live`` and its arguments are its documented API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from gan import dvc_internals as door

from conftest import ROOT

DOOR = "gan/dvc_internals.py"
DVC_PACKAGES = ("dvc", "dvc_task", "celery", "kombu", "scmrepo")
# Attributes of DVC's objects that only the door may use: the private ones of NEEDS and the
# undocumented queue, lock and layout names.
PRIVATE_ATTRS = {need.path.rsplit(".", 1)[1] for need in door.NEEDS
                 if need.path.rsplit(".", 1)[1].startswith("_")} | {
    "celery_queue", "pid_dir", "iter_queued", "mark_as_failure", "get_exp_rwlock",
    "get_infofile_path", "CELERY_STASH", "CELERY_FAILED_STASH", "EXEC_TMP_DIR",
    "EXEC_PID_DIR", "INFOFILE_EXT"}


def test_the_installed_dvc_has_every_internal_the_door_uses():
    lines = door.missing()
    assert not lines, "\n" + "\n".join(lines)


@pytest.mark.parametrize("need, line", [
    (door.Need("dvc.repo.experiments.queue.celery.LocalCeleryQueue._iter_gone", "reading"),
     "lacks dvc.repo.experiments.queue.celery.LocalCeleryQueue._iter_gone: "
     "gan/dvc_internals.py needs it (reading)"),
    (door.Need("dvc.no_such_module.thing", "x"), "lacks dvc.no_such_module.thing: "),
    (door.Need("dvc.repo.experiments.utils.EXEC_TMP_DIR", "the folder", value="exp"),
     "has dvc.repo.experiments.utils.EXEC_TMP_DIR = 'exps', not 'exp': "),
    (door.Need("dvc.repo.experiments.queue.tasks.run_exp", "the task", params=("gone",)),
     "has dvc.repo.experiments.queue.tasks.run_exp without the parameter(s) gone: "),
    (door.Need("dvc.repo.experiments.queue.celery.LocalCeleryQueue._spawn_worker", "names",
               text="dvc-worker-"),
     "has dvc.repo.experiments.queue.celery.LocalCeleryQueue._spawn_worker without "
     "'dvc-worker-': "),
])
def test_a_missing_internal_is_one_line_naming_it_and_the_door(need, line):
    (said,) = door.missing(needs=(need,))
    assert said.startswith(f"the installed DVC {door.version()} {line}"), said
    assert said.endswith(f"gan/dvc_internals.py needs it ({need.why})") and "\n" not in said


def test_the_door_tells_a_field_of_dvcs_dataclasses_from_a_missing_one():
    base = "dvc.repo.experiments.queue.base.QueueEntry."
    assert door.missing(needs=(door.Need(base + "stash_rev", "x"),)) == []
    assert len(door.missing(needs=(door.Need(base + "stash_sha", "x"),))) == 1


def test_gan_compare_checks_only_what_it_uses():
    queue_only = door.Need("dvc.repo.experiments.queue.celery.LocalCeleryQueue._gone", "q")
    assert door.missing("compare", needs=(queue_only,)) == []
    assert len(door.missing("queue", needs=(queue_only,))) == 1


@pytest.mark.parametrize("module, prog", [("gan.queue", "gan-queue"),
                                          ("gan.compare", "gan-compare")])
def test_a_command_refuses_a_dvc_without_a_name_in_one_line(module, prog, monkeypatch,
                                                            tmp_path, capsys):
    import importlib

    gone = door.Need("dvc.repo.experiments.queue.celery.LocalCeleryQueue._gone", "why",
                     user="both")
    monkeypatch.setattr(door, "NEEDS", (gone, gone))
    monkeypatch.chdir(tmp_path)  # no repository here: the check comes first
    argv = ["status"] if prog == "gan-queue" else []
    assert importlib.import_module(module).main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"error: the installed DVC {door.version()} lacks dvc.repo.experiments."
                   "queue.celery.LocalCeleryQueue._gone: gan/dvc_internals.py needs it (why) "
                   f"(and 1 more); the project supports dvc{door.SUPPORTED}: pip install -r "
                   "requirements.lock\n")


def test_pyproject_bounds_dvc_to_the_supported_releases_and_the_lock_is_inside():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (dvc,) = [d for d in deps if d.split(">")[0].split("<")[0].split("=")[0] == "dvc"]
    assert dvc == f"dvc{door.SUPPORTED}"
    spec = SpecifierSet(door.SUPPORTED)
    assert any(s.operator == "<" for s in spec), "dvc needs an upper bound"
    locked = [line.split("==")[1] for line in (ROOT / "requirements.lock").read_text()
              .splitlines() if line.startswith("dvc==")]
    assert locked and locked[0] in spec and door.version() in spec


def _reaches(path: Path) -> list[str]:
    """``file:line what`` for each way ``path`` reaches into DVC (see the module's doc)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    where = f"{path.relative_to(ROOT)}"
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"{where}:{node.lineno} imports {n}" for n in names
                  if n.split(".")[0] in DVC_PACKAGES]
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRS:
            found.append(f"{where}:{node.lineno} uses .{node.attr}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings and "tmp/exps" in node.value:
            found.append(f"{where}:{node.lineno} names .dvc/tmp/exps")
    return sorted(found, key=lambda line: int(line.split(":")[1].split()[0]))


def test_no_module_but_the_door_reaches_into_dvc():
    paths = [p for folder in ("gan", "stages") for p in sorted((ROOT / folder).rglob("*.py"))]
    assert (ROOT / DOOR) in paths
    found = [line for p in paths if p != ROOT / DOOR for line in _reaches(p)]
    assert not found, "only gan/dvc_internals.py may: " + "; ".join(found)


def test_the_scan_sees_each_way_in(tmp_path, monkeypatch):
    monkeypatch.setattr("test_dvc_internals.ROOT", tmp_path)
    (tmp_path / "m.py").write_text(
        '"""Reads .dvc/tmp/exps in its doc only."""\n'
        "import dvc.api\n"
        "from dvc.repo import Repo\n"
        "from dvclive import Live\n"
        "def f(queue):\n"
        "    from kombu.exceptions import KombuError\n"
        "    return queue._iter_processed(), queue.pid_dir, '.dvc/tmp/exps/run'\n")
    assert sorted(_reaches(tmp_path / "m.py")) == [
        "m.py:2 imports dvc.api", "m.py:3 imports dvc.repo",
        "m.py:6 imports kombu.exceptions", "m.py:7 names .dvc/tmp/exps",
        "m.py:7 uses ._iter_processed", "m.py:7 uses .pid_dir"]
