"""Typed, frozen, validated params: one dataclass per params.yaml section, one module each.

``gan/sections/<name>.py`` holds the dataclass of params.yaml's section ``<name>`` (its
``section`` names it); this module holds what every section shares: reading the file,
building a dataclass from its section with one clear error per bad key, and the record a
checkpoint keeps. A stage imports the sections it reads and no others, so that a key added
to one section changes the code deps (dvc.yaml) of the stages that read it alone: a new
``train`` key leaves download, prepare and classifier up to date
(``tests/test_params_graph.py``). ``gan.config`` gathers every section by name for the
tools that read the whole file.

params.yaml is the one statement of the values a run uses. A field's default is the value a
params file (or a record) that leaves the key out gets, and it is params.yaml's own value:
``tests/test_config.py`` fails when the two disagree. So ``TrainConfig(...)`` with a few keys
given is the shipped recipe but those keys; the tests' own recipe is ``UNIT_RECIPE`` in
``tests/conftest.py``.

Each field may carry metadata: ``choices`` (allowed values), ``min``/``max`` (inclusive
bounds), ``gt`` (exclusive lower bound), ``help`` (the text a bad value is told) and
``path`` (a string that names a file or folder: any value is allowed).
A key added after runs were recorded carries ``recorded_when_off=False``: at its default
(or off) it is left out of what checkpoints and resume fingerprints record (``to_record``,
for the model, train and classifier sections), so the committed runs keep their bytes and
their saved states. A key that names an entry of a registry (``model.arch``, ``train.loss``,
...) is checked against that registry where it is looked up (``choose``); ``gan.validate``
checks every one before a run starts against ``gan.names``, the registries' names alone
(``tests/test_names.py`` holds the two to each other).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gan.errors import ConfigError, GanError

T = TypeVar("T")


def opt(default: Any = dataclasses.MISSING, **meta: Any) -> Any:
    return field(default=default, metadata=meta)


def choose(registry: Mapping[str, T], key: str, name: str) -> T:
    """``registry[name]``, or a ConfigError naming ``key`` and the registry's names."""
    try:
        return registry[name]
    except KeyError:
        raise ConfigError(f"{key}: got {name!r}, allowed: {', '.join(registry)}") from None


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple and typing.get_args(tp)[-1] is Ellipsis:
        item = typing.get_args(tp)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(
            item, _type_name(item))
    if origin is tuple:
        return "a list [" + ", ".join(_type_name(a) for a in typing.get_args(tp)) + "]"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: got {value!r}, expected {_type_name(tp)}")
    if origin is tuple and typing.get_args(tp)[-1] is Ellipsis:  # a list of any length
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: got {value!r}, expected {_type_name(tp)}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: got {value!r}, expected {_type_name(tp)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in pairs)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        # PyYAML (YAML 1.1) reads `1e-4` as a string; `dvc exp run -S` writes such strings too.
        # NaN and infinities are refused whichever way they come: NaN passes every bound
        # check (each comparison is false), and `r1_weight: .nan` would silently mean "off".
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            raise ConfigError(f"{key}: got {value!r}, expected a finite number")
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: got {value!r}, expected {_type_name(tp)}")


def _check_bounds(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    if value is None:
        return
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_bounds(f"{key}[{i}]", item, meta)
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: got {value!r}, allowed: {', '.join(map(str, choices))}")
    low, high, gt = meta.get("min"), meta.get("max"), meta.get("gt")
    if gt is not None and not value > gt:
        raise ConfigError(f"{key}: got {value!r}, must be greater than {gt}")
    if low is not None and value < low:
        raise ConfigError(f"{key}: got {value!r}, must be at least {low}")
    if high is not None and value > high:
        raise ConfigError(f"{key}: got {value!r}, must be at most {high}")


def from_params(cls: type, raw: Any, prefix: str) -> Any:
    """Build the frozen dataclass ``cls`` from a params mapping found under ``prefix``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}.{unknown[0]}: unknown key, allowed keys: {', '.join(fields)}"
        )
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING:
                raise ConfigError(f"{key}: missing, expected {_type_name(hints[name])}")
            values[name] = f.default
            continue
        value = _coerce(key, raw[name], hints[name])
        _check_bounds(key, value, f.metadata)
        values[name] = value
    return cls(**values)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the
    last one silently, so the value a user reads at the top would not be the one used)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict, with one clear error when it is unreadable."""
    path = Path(path)
    try:
        blob = path.read_bytes()
        raw = yaml.load(blob.decode("utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise GanError(f"{path}: params file not found") from None
    except UnicodeDecodeError as exc:
        line = blob[:exc.start].count(b"\n") + 1
        raise GanError(f"{path}: not UTF-8 text (line {line}); save it as UTF-8") from None
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else "?"
        raise GanError(f"{path}: {exc.problem} (line {line}); keep one of them") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise GanError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise GanError(f"{path}: expected a mapping of params sections")
    return raw


def load_section(params: dict[str, Any], cls: type[T]) -> T:
    """The validated dataclass ``cls`` of its section (``cls.section``) of a params dict."""
    name = cls.section
    if name not in params:
        raise ConfigError(f"{name}: missing section in params")
    return from_params(cls, params[name], name)


def load_seed(params: dict[str, Any]) -> int:
    if "seed" not in params:
        raise ConfigError("seed: missing, expected an integer")
    seed = _coerce("seed", params["seed"], int)
    _check_bounds("seed", seed, {"min": 0, "max": 2**63 - 1})
    return seed


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass (tuples become lists, as YAML writes them)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()
    }


def is_off(value: Any) -> bool:
    """Whether a key's value means "off": null or an empty list."""
    return value is None or value == () or value == []


def to_record(cfg: Any) -> dict[str, Any]:
    """``to_dict`` less the keys marked ``recorded_when_off=False`` that are off or at their
    default, for what checkpoints and fingerprints record: a run that leaves a newer key
    alone records what it recorded before the key existed."""
    quiet = {f.name: f.default for f in dataclasses.fields(cfg)
             if f.metadata.get("recorded_when_off", True) is False}
    return {k: v for k, v in to_dict(cfg).items()
            if not (k in quiet and (is_off(v) or v == quiet[k]))}
