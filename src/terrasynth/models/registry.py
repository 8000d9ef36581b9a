"""Finding a model by name or path: the shipped default, a local folder, or (for Stable Diffusion) a hub id."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED_MODELS = {"default": "default", "pix2pix": "pix2pix"}  # name: folder under weights/


def shipped_model_path(name: str = "default") -> Path:
    path = WEIGHTS_DIR / SHIPPED_MODELS.get(name, name)
    if not path.is_dir():
        raise InputError(path, f"shipped model {name!r} is not installed", "reinstall terrasynth")
    return path


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model folder for ``name_or_path``: a shipped model name or an existing folder."""
    text = str(name_or_path)
    if text in SHIPPED_MODELS:
        return shipped_model_path(text)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise InputError(path, "a model is a folder, not a file", "pass the folder that holds the model's config")
    raise InputError(path, "model folder not found", f"use a model folder or one of: {', '.join(SHIPPED_MODELS)}")
