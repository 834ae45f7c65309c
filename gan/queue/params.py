"""What a queued experiment sets otherwise than the workspace: its commit's params against
the workspace's, flat, ``key=value`` as ``-S`` writes them."""

from __future__ import annotations

import json

from gan import dvc_internals as dvc

_UNSET = object()


def read_params(repo, rev: str | None, files: list[str]) -> dict[str, object]:
    """The params of commit ``rev`` (None: the workspace), flat, keyed file:key past the
    first file (params.yaml's keys read as ``-S`` writes them)."""
    load = dvc.params_reader(repo, rev)
    out = {}
    for i, name in enumerate(files):
        try:
            tree = load(name)
        except Exception as exc:  # noqa: BLE001 - a file that does not parse is shown so
            tree = {"<unreadable>": str(exc).splitlines()[0] if str(exc) else name}
        out.update((k if i == 0 else f"{name}:{k}", v) for k, v in dvc.flat(tree).items())
    return out


def show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def differs(repo, rev: str, workspace: dict, files: list[str]) -> str:
    """``key=value`` of each param of commit ``rev`` that the workspace lacks or sets
    otherwise; "?" when the commit is gone from git."""
    try:
        theirs = read_params(repo, rev, files)
    except Exception:  # noqa: BLE001 - a stash commit git has pruned
        return "?"
    keys = sorted(set(theirs) | set(workspace))
    return " ".join(f"{k}={show(theirs[k])}" if k in theirs else f"{k}=<unset>"
                    for k in keys if theirs.get(k, _UNSET) != workspace.get(k, _UNSET))
