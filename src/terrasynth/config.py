"""Frozen dataclass configs with a JSON round trip that rejects unknown keys."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError
from .files import read_json, write_json_atomic

T = TypeVar("T")


def config_to_dict(config) -> dict:
    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return convert(config)


def config_from_dict(cls: type[T], data: dict, source: str | Path | None = None) -> T:
    """Build ``cls`` from a dict; lists become tuples where the field is a tuple; nested dataclasses
    recurse."""
    if not isinstance(data, dict):
        raise InputError(source, f"{cls.__name__} must be a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(
            source,
            f"unknown {cls.__name__} key(s): {', '.join(unknown)}",
            f"known: {', '.join(sorted(names))}",
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = _strip_optional(hints.get(name))
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value, source)
        elif (origin is tuple or hint is tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise InputError(source, f"invalid {cls.__name__}: {error}") from None


def _strip_optional(hint):
    """``X | None`` and ``Optional[X]`` → ``X``, so optional tuples and nested configs convert too."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def save_config(config, path: str | Path) -> None:
    write_json_atomic(path, config_to_dict(config))


def load_config(cls: type[T], path: str | Path) -> T:
    return config_from_dict(cls, read_json(path), path)
