"""No function in gan/ or stages/ runs past MAX_LINES lines, nested functions included."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

MAX_LINES = 100


def function_lengths(path: Path) -> dict[str, int]:
    """{"file:line name": lines} of every function and method in ``path``, nested too."""
    tree = ast.parse(path.read_text(), str(path))
    return {f"{path.relative_to(ROOT)}:{node.lineno} {node.name}":
            node.end_lineno - node.lineno + 1
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_no_function_is_longer_than_the_limit():
    lengths = {}
    for folder in ("gan", "stages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lengths.update(function_lengths(path))
    assert lengths, "no functions found"
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not long, f"functions over {MAX_LINES} lines: {long}"


def test_the_check_sees_a_long_function(tmp_path, monkeypatch):
    monkeypatch.setattr("test_code_shape.ROOT", tmp_path)
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"class A:\n    def f(self):\n{body}\n")
    assert function_lengths(tmp_path / "long.py") == {"long.py:2 f": MAX_LINES + 1}


def calls_of(path: Path, module: str, name: str) -> list[int]:
    """Lines of ``path`` that call ``module.name(...)``."""
    tree = ast.parse(path.read_text(), str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == name and isinstance(node.func.value, ast.Name)
            and node.func.value.id == module]


def test_every_rank_trains_through_one_call_with_one_resume_object():
    """stages/train.py calls train.train once, for every rank, with a gan.resume.Resume:
    resume's settings never travel as loose arguments again."""
    import inspect

    from gan import train
    from gan.resume import Resume

    assert len(calls_of(ROOT / "stages" / "train.py", "train", "train")) == 1
    params = inspect.signature(train.train).parameters
    assert params["resume"].annotation in (Resume | None, "Resume | None")
    loose = {"resume_path", "checkpoint_every", "resume_store", "store_keep",
             "fingerprint_parts"} & set(params)
    assert not loose, f"train.train takes resume settings loose: {sorted(loose)}"


def test_the_call_count_sees_a_second_call(tmp_path):
    (tmp_path / "s.py").write_text("from gan import train\nif r:\n    train.train(a)\n"
                                   "else:\n    train.train(b, hooks=())\n")
    assert calls_of(tmp_path / "s.py", "train", "train") == [3, 5]
