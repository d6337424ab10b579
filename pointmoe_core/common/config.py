"""The one config mechanism: dataclasses that load from YAML files and dicts, with ``key=value``
overrides from the command line.

Every config of the project is a ``@dataclass`` deriving from ``YamlConfig``. Loading is strict,
so a typo in a YAML file or an override fails instead of silently falling back to a default:

* unknown keys raise, naming the section (``unknown keys in backbone: ['num_expert']``);
* a nested dataclass field takes a mapping, a tuple field a list (YAML has no tuples), also inside
  optional fields and dict values (``dict[str, tuple[int, ...]]``);
* ``load(path, overrides)`` applies ``key=value`` overrides whose values are YAML and whose dotted
  keys reach into nested sections (``fit.steps=2``, ``backbone.num_experts=4``);
* ``check_overrides`` says, before anything loads, which override names no field or gives a value
  its field cannot hold (the command line turns that into a usage error).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

import yaml

C = TypeVar("C", bound="YamlConfig")


class YamlConfig:
    """Mixin for ``@dataclass`` configs: ``from_dict``, ``from_yaml``, ``load``, ``replace``, ``to_dict``."""

    # how errors name a config loaded at the top (a nested one is named by its section)
    config_name: ClassVar[str] = ""

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, section: str = "") -> C:
        """The config from plain values; ``section`` is its dotted place in a larger config."""
        where = section or cls.config_name or cls.__name__
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise TypeError(f"{where} must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown keys in {section}: {unknown}" if section else f"unknown {where} keys: {unknown}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _coerce(hints[name], value, f"{section}.{name}" if section else name)
                      for name, value in data.items()})

    @classmethod
    def from_yaml(cls: type[C], path: str | Path, key: str | None = None) -> C:
        """Load from a YAML file; ``key`` picks one section of a larger file."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(data[key] if key else data)

    @classmethod
    def load(cls: type[C], path: str | Path | None, overrides: Sequence[str] = ()) -> C:
        """The YAML file (or the defaults) with ``key=value`` overrides applied."""
        data = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
        for item in overrides:
            key, value = _split(item)
            *sections, name = key.split(".")
            section = data
            for part in sections:
                section = section.setdefault(part, {})
            section[name] = value
        return cls.from_dict(data)

    @classmethod
    def check_overrides(cls, overrides: Sequence[str]) -> None:
        """Raise ``ValueError`` for an override that is not ``key=value``, names no field (dotted
        keys reach into nested configs) or gives a value its field's type cannot hold. Fields typed
        as free dicts take any keys below them: those are their owner's to check."""
        for item in overrides:
            key, value = _split(item)
            owner: Any = cls
            names = key.split(".")
            for depth, name in enumerate(names):
                if not (isinstance(owner, type) and dataclasses.is_dataclass(owner)):
                    break
                known = [f.name for f in dataclasses.fields(owner)]
                if name not in known:
                    raise ValueError(f"override {key}: {owner.__name__} has no field {name!r}; "
                                     f"fields: {', '.join(known)}")
                kind = typing.get_type_hints(owner)[name]
                if depth == len(names) - 1 and not _fits(value, kind):
                    raise ValueError(f"override {item!r}: {key} takes {_type_name(kind)}, not {value!r}")
                owner = kind

    def replace(self: C, changes: Mapping[str, Any], section: str = "") -> C:
        """A copy with ``changes`` (plain values, as in YAML) loaded over this config's values."""
        return type(self).from_dict({**self.to_dict(), **changes}, section)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _split(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ValueError(f"override {item!r} is not key=value")
    try:
        return key, yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"override {item!r}: the value is not YAML ({' '.join(str(error).split())})") from None


def _coerce(kind: Any, value: Any, where: str) -> Any:
    """``value`` as YAML gave it, turned into what a field of type ``kind`` holds."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):  # the option that takes this kind of value
        option = next((option for option in args if _takes(option, value)), None)
        return value if option is None else _coerce(option, value, where)
    if isinstance(kind, type) and issubclass(kind, YamlConfig):
        return value if isinstance(value, kind) else kind.from_dict(value, where)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is dict and isinstance(value, Mapping) and len(args) == 2:
        return {key: _coerce(args[1], item, f"{where}.{key}") for key, item in value.items()}
    return value


def _takes(kind: Any, value: Any) -> bool:
    """Whether ``_coerce`` turns ``value`` into a ``kind``: a mapping into a config or dict, a list into a tuple."""
    origin = typing.get_origin(kind)
    if isinstance(value, Mapping):
        return origin is dict or (isinstance(kind, type) and issubclass(kind, YamlConfig))
    return origin is tuple and isinstance(value, list)


def _fits(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if kind is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin in (tuple, list) or kind in (tuple, list):
        return isinstance(value, list)
    if origin is dict or kind is dict or dataclasses.is_dataclass(kind):
        return isinstance(value, dict)
    return True  # a type this check does not model: the config itself decides


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
