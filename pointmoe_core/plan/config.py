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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
