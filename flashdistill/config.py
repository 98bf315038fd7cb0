"""Typed configs: dataclasses loaded from one YAML file plus dotted ``key=value`` overrides.

Write a config as nested dataclasses with a comment per field. Per-field checks go in
``field(metadata={"choices": [...], "min": 0, "max": 1})`` (or use ``typing.Literal``); cross-field checks
in a ``validate(self)`` method that raises ``ConfigError``. Register top-level configs by name so a YAML file
can say which class it is for (``recipe: <name>`` as its first key)::

    @register_config("teacher")
    @dataclass
    class TeacherConfig:
        train: TrainConfig = field(default_factory=TrainConfig)  # trainer settings
        lr: float = field(default=1e-4, metadata={"min": 0.0})  # AdamW learning rate

    cfg = load_config(TeacherConfig, "configs/teacher.yaml", ["train.max_steps=10", "lr=3e-4"])
    print(dump_config(cfg))   # the resolved YAML (what --dry-run prints)

All problems are reported as ``ConfigError`` (a ``ValueError``) before any work starts: unknown keys with the
nearest valid key, wrong types and out-of-range values with the field, the value and what is allowed, and
missing files with their path.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = [
    "ConfigError",
    "register_config",
    "config_class",
    "registered_name",
    "load_config",
    "load_any_config",
    "from_dict",
    "to_dict",
    "dump_config",
    "print_config",
    "save_config",
    "apply_overrides",
    "read_yaml",
]

T = TypeVar("T")
_REGISTRY: dict[str, type] = {}
_PACKAGE_ROOT = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A config file, override or value is wrong; the message says what and where."""


# ----------------------------------------------------------------------------------------------- registry
def register_config(name: str):
    """Class decorator: make ``cls`` the config class for YAML files whose ``recipe:`` key is ``name``."""

    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"register_config({name!r}) must decorate a dataclass, got {cls!r}")
        old = _REGISTRY.get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            where = f"{old.__module__}.{old.__qualname__}"
            raise ValueError(f"config name {name!r} is already registered to {where}")
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_name(cls: type) -> str | None:
    """The registry name of ``cls`` (or ``None`` if it is not registered)."""
    return next((n for n, c in _REGISTRY.items() if c is cls), None)


def config_class(name: str) -> type:
    """Find the config class registered as ``name``, importing the module that registers it if needed.

    Modules are found by scanning the package sources for ``register_config("name")``, so nothing has to be
    listed by hand; a name nobody registers is a ``ConfigError`` listing the known names.
    """
    if name not in _REGISTRY:
        pattern = re.compile(r"register_config\(\s*['\"]" + re.escape(name) + r"['\"]")
        for path in sorted(_PACKAGE_ROOT.rglob("*.py")):
            if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
                rel = path.relative_to(_PACKAGE_ROOT.parent).with_suffix("")
                importlib.import_module(".".join(rel.parts))
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none imported)"
        hint = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"no config class is registered as recipe {name!r}{extra} (known: {known})")
    return _REGISTRY[name]


# ----------------------------------------------------------------------------------------------- loading
def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, a YAML syntax error or a non-mapping is a ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        from .assets_paths import shipped_config

        shipped = shipped_config(path)
        if shipped is None:
            raise ConfigError(f"config file not found: {path}")
        path = shipped
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"{path}: not a readable text file ({type(err).__name__}: {err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (values are parsed as YAML: ints, floats, bools,
    ``null``/``None``, ``[1, 2]`` lists; ``1,2,3`` becomes a list where the field is a list)."""
    out = _deepcopy_dict(data)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.max_steps=100)")
        value = _parse_scalar(raw.strip())
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else child
                if not isinstance(child, dict):
                    raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from the YAML at ``path`` (defaults when ``None``) plus dotted overrides, validated."""
    data = read_yaml(path) if path is not None else {}
    where = str(path) if path is not None else "<defaults>"
    name = registered_name(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    recipe = data.get("recipe")
    if recipe is not None and name is not None and recipe != name and "recipe" not in fields:
        raise ConfigError(f"{where}: this file is for recipe {recipe!r}, not {name!r}")
    if "recipe" not in fields:
        data.pop("recipe", None)
    data = apply_overrides(data, overrides)
    return from_dict(cls, data, source=where)


def load_any_config(path: str | Path, overrides: list[str] | None = None) -> tuple[str, Any]:
    """Load a YAML whose ``recipe:`` key names a registered config class; returns ``(name, config)``."""
    data = read_yaml(path)
    name = data.get("recipe")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: missing a 'recipe: <name>' key naming its config class")
    return name, load_config(config_class(name), path, overrides)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, checking keys, types, choices and ranges."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'config'!s} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            full = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            valid = ", ".join(fields)
            raise ConfigError(f"{source}: unknown key '{full}'{hint} (valid keys here: {valid})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        full = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key '{full}'")
            continue
        value = _coerce(data[name], hints[name], full, source)
        _check_metadata(value, f.metadata, full, source)
        kwargs[name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as err:
            where = f"in '{prefix[:-1]}': " if prefix else ""
            raise ConfigError(f"{source}: {where}{err}") from None
    return obj


# ----------------------------------------------------------------------------------------------- dumping
def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML/JSON."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def dump_config(cfg: Any) -> str:
    """The resolved config as YAML text (what ``--dry-run`` prints; reloadable with ``load_config``)."""
    data = to_dict(cfg)
    name = registered_name(type(cfg))
    if name is not None and "recipe" not in data:
        data = {"recipe": name, **data}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=110)


def print_config(cfg: Any, file=None) -> None:
    """Print the resolved YAML to ``file`` (stdout by default)."""
    print(dump_config(cfg), end="", file=file or sys.stdout)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved YAML to ``path`` (e.g. ``<run_dir>/config.yaml``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- coercion
_NUMBER = re.compile(r"^[+-]?(\d[\d_]*\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _parse_scalar(raw: str) -> Any:
    if raw in ("None", "none", "~"):
        return None
    try:
        return yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw


def _deepcopy_dict(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy_dict(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy_dict(v) for v in d]
    return d


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _bad(source: str, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{source}: '{key}' = {value!r} is not valid; expected {allowed}")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _coerce(value, options[0], key, source)
        for opt in options:
            try:
                return _coerce(value, opt, key, source)
            except ConfigError:
                continue
        allowed = " or ".join(_type_name(a) for a in args).replace("NoneType", "null")
        raise _bad(source, key, value, allowed)
    if value is None:
        raise _bad(source, key, value, f"a {_type_name(tp)} (null is not allowed here)")
    if origin is Literal:
        if value not in args:
            raise _bad(source, key, value, "one of " + ", ".join(repr(a) for a in args))
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _bad(source, key, value, f"a mapping of {_type_name(tp)} keys")
        return from_dict(tp, value, source, prefix=f"{key}.")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [_parse_scalar(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _bad(source, key, value, f"a list ({_type_name(tp)})")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _bad(source, key, value, f"{len(args)} items ({_type_name(tp)})")
            return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _bad(source, key, value, "a mapping")
        vt = args[1] if args else Any
        return {k: _coerce(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise _bad(source, key, value, "a boolean (true/false)")
    if tp is int:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value) if any(c in value for c in ".eE") else int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(source, key, value, "an integer")
    if tp is float:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad(source, key, value, "a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise _bad(source, key, value, "a string")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise _bad(source, key, value, "a path")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _bad(source, key, value, _type_name(tp))


def _check_metadata(value: Any, meta: typing.Mapping[str, Any], key: str, source: str) -> None:
    if value is None:
        return
    values = value if isinstance(value, (list, tuple)) else [value]
    choices = meta.get("choices")
    lo, hi = meta.get("min"), meta.get("max")
    for v in values:
        if choices is not None and v not in choices:
            raise _bad(source, key, value, "one of " + ", ".join(repr(c) for c in choices))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if lo is not None and v < lo:
                raise ConfigError(f"{source}: '{key}' = {value!r} is out of range; must be >= {lo}")
            if hi is not None and v > hi:
                raise ConfigError(f"{source}: '{key}' = {value!r} is out of range; must be <= {hi}")
