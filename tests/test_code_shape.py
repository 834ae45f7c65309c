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


def gan_imports(path: Path) -> set[str]:
    """The gan modules ``path`` imports anywhere in it (deferred imports inside functions
    and TYPE_CHECKING blocks included), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "gan")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "gan":
            # `from gan import io` names the module gan.io; `from gan.io import x` gan.io
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found.update(subs if node.module == "gan" else {node.module})
    return found


def import_cycle(root: Path) -> list[str] | None:
    """One cycle of imports among root's gan modules, or None."""
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (root / "gan").rglob("*.py")}
    graph = {name: {m for m in gan_imports(path) if m in modules and m != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_gan_has_no_import_cycle_not_even_a_deferred_one():
    assert import_cycle(ROOT) is None, " -> ".join(import_cycle(ROOT))


def test_the_check_sees_a_deferred_cycle(tmp_path):
    (tmp_path / "gan").mkdir()
    (tmp_path / "gan" / "__init__.py").write_text("")
    (tmp_path / "gan" / "a.py").write_text("from gan import b\n")
    (tmp_path / "gan" / "b.py").write_text("def f():\n    from gan.a import x\n")
    assert import_cycle(tmp_path) == ["gan.a", "gan.b", "gan.a"]
