"""YAML configs loaded into frozen dataclasses.

- Unknown keys raise :class:`ConfigError` naming the key and the allowed ones.
- A YAML file may start with ``base: other.yaml`` (relative to itself); it is read first and the rest
  overrides it, so variants are small overrides, not copies.
- ``--set a.b=value`` overrides are parsed with YAML (``3`` -> int, ``true`` -> bool, ``[1,2]`` -> list).
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


MAX_CONFIG_BYTES = 1_000_000
"""Config files larger than this are refused (they are a few hundred bytes in practice)."""
MAX_BASE_DEPTH = 16
"""Longest ``base:`` chain followed."""


def read_yaml(path: str | Path, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, resolving a ``base:`` chain. Raises :class:`ConfigError` for a missing,
    binary, oversized or invalid file and for a ``base:`` chain that loops or is too long."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    key = str(p.resolve())
    if key in _chain:
        loop = " -> ".join(Path(c).name for c in (*_chain, key))
        raise ConfigError(f"{p}: 'base:' chain loops ({loop}); remove the circular base")
    if len(_chain) >= MAX_BASE_DEPTH:
        raise ConfigError(f"{p}: 'base:' chain is longer than {MAX_BASE_DEPTH} files")
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: config file is {p.stat().st_size} bytes, over the "
                              f"{MAX_CONFIG_BYTES}-byte limit; is this a config?")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (expected a YAML config)") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config ({e.strerror})") from None
    if "\x00" in text:
        raise ConfigError(f"{p}: not a text file (expected a YAML config)")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{p}: YAML is nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{p}: 'base' must be a file name, got {base!r}")
        data = deep_merge(read_yaml(p.parent / base, (*_chain, key)), data)
    return data


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def find_config(path: str | Path) -> Path:
    """``path`` if it exists; else, for a relative path such as ``configs/audio2pose/base.yaml``,
    the same path under the project root (so packaged configs are found from any folder).
    Raises :class:`ConfigError` when neither exists."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_absolute() and (PROJECT_ROOT / p).is_file():
        return PROJECT_ROOT / p
    raise ConfigError(f"{p}: config file not found (looked in the working folder and in "
                      f"{PROJECT_ROOT})")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """``["model.dim=64", "lr=1e-3"]`` -> nested dict. Raises on a missing ``=``."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except (yaml.YAMLError, RecursionError):
            value = raw
        if not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"override {item!r}: the key before '=' is empty or has an empty "
                              "part")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def flag_overrides(overrides: typing.Iterable[str], flags: dict[str, Any]) -> list[str]:
    """The ``--set KEY=VALUE`` items, then ``key=value`` for each command-line flag that was given
    (not None) in ``flags`` (config key -> value): later items win, so a flag beats a ``--set``
    of the same key."""
    return list(overrides) + [f"{key}={value}" for key, value in flags.items()
                              if value is not None]


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses; strict on keys."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where) if len(args) == 1 else value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        seq = [_coerce(inner, v, where) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)  # PyYAML (YAML 1.1) reads "1e-4" (no dot) as a string
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def load_config(cls: type[T], path: str | Path | None = None,
                overrides: typing.Iterable[str] | dict[str, Any] = ()) -> T:
    """Defaults of ``cls``, then the YAML file, then ``--set`` overrides."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    if not over:
        return from_dict(cls, data, str(path or "config"))
    from_dict(cls, data, str(path or "config"))  # the file alone: its own mistakes name it
    try:
        return from_dict(cls, deep_merge(data, over), "--set")
    except ConfigError as e:  # then a mistake is the override's
        raise ConfigError(str(e).replace("--set.", "--set ", 1)) from None


def replace_config(cfg: T, overrides: typing.Iterable[str] | dict[str, Any]) -> T:
    """Apply overrides to an existing config instance (strict)."""
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    return from_dict(type(cfg), deep_merge(to_dict(cfg), over))


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-ready dict (tuples become lists)."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v
    return conv(cfg)
