"""Configs from an optional JSON file with command-line flags on top (the training commands share this)."""

from __future__ import annotations


def flag_values(args, fields: dict[str, str]) -> dict:
    """``{config field: args attribute}`` → ``{config field: flag value}``. A repeatable flag's list becomes a
    tuple, or None when it was not given."""
    values = {}
    for field, attr in fields.items():
        value = getattr(args, attr)
        values[field] = (tuple(value) or None) if isinstance(value, list) else value
    return values


def load_or_default(config_class, path: str | None, overrides: dict):
    """A config from a JSON file (if given) with command-line flags on top; a None flag was not given."""
    from ..config import config_from_dict
    from ..files import read_json

    data = read_json(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(config_class, data, path)
