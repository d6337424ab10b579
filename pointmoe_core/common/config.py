"""Plain dataclass configs that load from YAML / dicts (nested dataclasses included)."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

C = TypeVar("C", bound="YamlConfig")


class YamlConfig:
    """Mixin for ``@dataclass`` configs: ``from_dict``, ``from_yaml`` and ``to_dict``.

    Unknown keys raise (a typo in a YAML file should not silently fall back to a default);
    lists become tuples where the field is a tuple; nested dataclass fields take dicts.
    """

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None) -> C:
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            kind = hints[name]
            if isinstance(kind, type) and issubclass(kind, YamlConfig) and isinstance(value, Mapping):
                data[name] = kind.from_dict(value)
            elif typing.get_origin(kind) is tuple and isinstance(value, list):
                data[name] = tuple(value)
        return cls(**data)

    @classmethod
    def from_yaml(cls: type[C], path: str | Path, key: str | None = None) -> C:
        """Load from a YAML file; ``key`` picks one section of a larger file."""
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data[key] if key else data)

    @classmethod
    def load(cls: type[C], path: str | Path | None, overrides: typing.Sequence[str] = ()) -> C:
        """The YAML file (or the defaults) with ``key=value`` overrides; values are parsed as YAML
        and dotted keys reach into nested sections (``fit.steps=2``)."""
        data = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not key=value")
            *sections, name = key.split(".")
            section = data
            for part in sections:
                section = section.setdefault(part, {})
            section[name] = yaml.safe_load(text)
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
