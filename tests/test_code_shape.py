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
