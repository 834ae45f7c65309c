"""Each stage in dvc.yaml depends on exactly the first-party code its script imports.

The closure is read from the source (every ``import`` and ``from ... import``, at any depth
in a file, functions included) starting at ``stages/<name>.py`` and following imports into
``gan/`` and ``stages/``; importing a module also runs its packages' ``__init__.py``. It
follows no import of ``gan.preflight`` (REFUSES_ONLY): that check of the whole params file
can stop the first stage but never change an output, so, like the params a stage reads only
to refuse them early, it is no stage's dep (gan/preflight.py says why).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from gan.resume import FIRST_PARTY  # the packages whose files are the trainer's code

from conftest import ROOT

# Modules that only refuse bad params: the closure does not follow an import of them.
REFUSES_ONLY = frozenset({"gan.preflight"})


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of first-party module ``name`` (``gan.data``), or None if it is not one."""
    parts = name.split(".")
    if parts[0] not in FIRST_PARTY:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Dotted names of the modules ``path`` imports, and of the packages above them."""
    names: set[str] = set()
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .y import z
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names.add(base)
            # ``from gan import data`` imports the module gan.data when there is one.
            names.update(f"{base}.{alias.name}" for alias in node.names
                         if module_file(f"{base}.{alias.name}", root) is not None)
    with_parents = set()
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return with_parents


def closure(script: Path, root: Path = ROOT) -> set[str]:
    """Repo-relative paths of every first-party file that running ``script`` imports."""
    seen: set[Path] = set()
    todo = [script]
    for parent in script.relative_to(root).parents:  # python -m stages.x runs stages/__init__
        if parent != Path(".") and (root / parent / "__init__.py").is_file():
            todo.append(root / parent / "__init__.py")
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, root) - REFUSES_ONLY:
            found = module_file(name, root)
            if found is not None and found not in seen:
                todo.append(found)
    return {p.relative_to(root).as_posix() for p in seen}


def declared_code(stage: dict) -> set[str]:
    """The .py files (and folders of them) a dvc.yaml stage lists as deps."""
    code = set()
    for dep in stage.get("deps", []):
        path = ROOT / dep
        if path.is_dir() and any(path.rglob("*.py")):
            code.update(p.relative_to(ROOT).as_posix() for p in path.rglob("*.py"))
        elif dep.endswith(".py"):
            code.add(dep)
    return code


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_its_import_closure(name):
    stage = STAGES[name]
    script = stage["cmd"].split("-m ", 1)[1].split()[0]  # python -m stages.<name> ...
    imported = closure(module_file(script))
    declared = declared_code(stage)
    missing, needless = sorted(imported - declared), sorted(declared - imported)
    assert not missing, f"{name} imports but does not list: {missing}"
    assert not needless, f"{name} lists but does not import: {needless}"


def test_closure_follows_function_level_and_package_imports(tmp_path):
    (tmp_path / "gan" / "sub").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    for init in ("gan/__init__.py", "gan/sub/__init__.py", "stages/__init__.py"):
        (tmp_path / init).write_text("")
    (tmp_path / "gan" / "a.py").write_text("import torch\n\ndef f():\n    from gan.sub import b\n")
    (tmp_path / "gan" / "sub" / "b.py").write_text("from . import c\n")
    (tmp_path / "gan" / "sub" / "c.py").write_text("import os\n")
    (tmp_path / "gan" / "unused.py").write_text("")
    (tmp_path / "stages" / "s.py").write_text("from gan import a\n")
    assert closure(tmp_path / "stages" / "s.py", tmp_path) == {
        "stages/__init__.py", "stages/s.py", "gan/__init__.py", "gan/a.py",
        "gan/sub/__init__.py", "gan/sub/b.py", "gan/sub/c.py"}


@pytest.mark.parametrize("name", ["download", "prepare", "classifier"])
def test_model_and_loss_code_is_no_dep_of_the_data_stages(name):
    """An edit of an architecture, a loss, an optimizer or an augmentation re-runs train and
    what follows only: the data stages check names against gan/names.py instead."""
    script = STAGES[name]["cmd"].split("-m ", 1)[1].split()[0]
    imported = closure(module_file(script))
    model_code = {"gan/losses.py", "gan/optim.py", "gan/augment.py", "gan/step.py",
                  "gan/sample.py"} | {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "gan" / "models").glob("*.py")}
    assert not imported & model_code, f"{name} imports {sorted(imported & model_code)}"


@pytest.mark.parametrize("name", ["download", "prepare", "classifier"])
def test_the_data_stages_import_no_section_they_do_not_read(name):
    """A key added to train or model (or resume, sample, plot, evaluate) changes a file none
    of the data stages imports, so it leaves them up to date; so does an edit of the batches
    training draws (tests/test_params_graph.py runs it through dvc status)."""
    script = STAGES[name]["cmd"].split("-m ", 1)[1].split()[0]
    imported = closure(module_file(script))
    read = {"download": {"data"}, "prepare": {"data"}, "classifier": {"classifier", "data"}}[name]
    sections = {p.stem for p in (ROOT / "gan" / "sections").glob("*.py")} - {"__init__"}
    unread = {f"gan/sections/{s}.py" for s in sections - read - {"numerics"}}
    assert not imported & unread, sorted(imported & unread)
    if name != "classifier":  # the judge trains on batches too
        assert "gan/batches.py" not in imported


@pytest.mark.parametrize("name", sorted(STAGES))
def test_no_stage_imports_every_section(name):
    """gan.config gathers every section for the tools; a stage that imported it would
    re-run for a key added to any section."""
    script = STAGES[name]["cmd"].split("-m ", 1)[1].split()[0]
    assert "gan/config.py" not in closure(module_file(script))


def test_preflight_only_refuses():
    """What the closures leave out can stop a stage but not change an output: its one public
    function returns nothing, and the module does nothing when imported but define it."""
    import inspect

    from gan import preflight

    tree = ast.parse(inspect.getsource(preflight))
    public = [node for node in tree.body if isinstance(node, ast.FunctionDef)
              and not node.name.startswith("_")]
    assert [f.name for f in public] == ["check_params"]
    assert not [node for node in ast.walk(public[0])
                if isinstance(node, ast.Return) and node.value is not None]
    assert all(isinstance(node, (ast.Expr, ast.ImportFrom, ast.Import, ast.FunctionDef))
               for node in tree.body)
