"""Training checkpoints without pickle: weights, optimizer state and RNG state as safetensors, the rest as JSON.

Layout of a run folder::

    run/
      config.json              resolved training config
      checkpoint-500/          rotated: only the last K are kept
        <name>.safetensors     model weights (one per model)
        optimizer.safetensors  optimizer tensors, optimizer.json its scalars (one pair per named optimizer)
        rng.safetensors        torch RNG state
        state.json             step and other counters; written last, so a folder without it is incomplete
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..files import read_json

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
PARTIAL_PATTERN = re.compile(r"^\.checkpoint-(\d+)\.partial$")
TEMPORARY_PATTERN = re.compile(r"^\..+\.tmp$")  # files.atomic_path's temporary names

log = logging.getLogger(__name__)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _named_optimizers(optimizer) -> dict[str, torch.optim.Optimizer]:
    """``optimizer`` as {file stem: optimizer}: one optimizer is ``optimizer``, a dict names several."""
    if optimizer is None:
        return {}
    return dict(optimizer) if isinstance(optimizer, dict) else {"optimizer": optimizer}


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    models: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer] | None,
    extra: dict | None = None,
    keep: int = 3,
) -> Path:
    """Write ``run_dir/checkpoint-{step}`` atomically (built under a temp name, then renamed), keep the last
    ``keep`` checkpoints. ``optimizer`` is one optimizer or a dict of them by file stem."""
    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{step}"
    staging = run_dir / f".checkpoint-{step}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, model in models.items():
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(weights, staging / f"{name}.safetensors")
    for name, named_optimizer in _named_optimizers(optimizer).items():
        tensors, meta = _flatten_optimizer(named_optimizer)
        save_file(tensors, staging / f"{name}.safetensors")
        (staging / f"{name}.json").write_text(json.dumps(meta))
    save_file({"torch": torch.get_rng_state()}, staging / "rng.safetensors")
    state = {
        "step": step,
        "python_random": _encode_python_random(random.getstate()),
        "numpy_random": _encode_numpy_random(np.random.get_state()),
        **(extra or {}),
    }
    (staging / "state.json").write_text(json.dumps(state))
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_files(run_dir: str | Path) -> list[Path]:
    """Remove what a killed run leaves behind: ``.checkpoint-N.partial`` folders (a checkpoint being written)
    and hidden ``.*.tmp`` files (an atomic write under way), anywhere in ``run_dir``. Call it only when this
    process owns the run folder (training starting or resuming), never while another process writes there.
    Returns the paths removed; each removal is logged with its size."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    stale = [p for p in run_dir.iterdir() if PARTIAL_PATTERN.match(p.name) and p.is_dir()]
    stale += [p for p in run_dir.rglob(".*.tmp") if TEMPORARY_PATTERN.match(p.name) and p.is_file()]
    for path in stale:
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        log.warning("removed %s (%.1f MB) left by an interrupted run", path, size / 1e6)
    return stale


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints (those with ``state.json``) in step order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and (path / "state.json").is_file():
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def resolve_checkpoint(run_dir: str | Path, resume: str | None) -> Path | None:
    """``None`` → no resume; ``"latest"`` → newest complete checkpoint or None; else a checkpoint path."""
    if resume is None:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(run_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise InputError(path, "not a complete checkpoint folder (no state.json)", "pass --resume latest")
    return path


def load_checkpoint(
    checkpoint: str | Path,
    models: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer] | None = None,
) -> dict:
    """Restore models, optimizer(s) and RNG state in place; return the saved ``state.json`` dict."""
    checkpoint = Path(checkpoint)
    for name, model in models.items():
        path = checkpoint / f"{name}.safetensors"
        if not path.is_file():
            raise InputError(path, "checkpoint has no weights for this model")
        model.load_state_dict(load_file(path))
    for name, named_optimizer in _named_optimizers(optimizer).items():
        if (checkpoint / f"{name}.safetensors").is_file():
            meta = json.loads((checkpoint / f"{name}.json").read_text())
            tensors = load_file(checkpoint / f"{name}.safetensors")
            named_optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))
    state = read_json(checkpoint / "state.json")
    torch.set_rng_state(load_file(checkpoint / "rng.safetensors")["torch"])
    random.setstate(_decode_python_random(state["python_random"]))
    np.random.set_state(_decode_numpy_random(state["numpy_random"]))
    return state


def _encode_python_random(state) -> list:
    return [state[0], list(state[1]), state[2]]


def _decode_python_random(data) -> tuple:
    return (data[0], tuple(data[1]), data[2])


def _encode_numpy_random(state) -> list:
    return [state[0], state[1].tolist(), state[2], state[3], state[4]]


def _decode_numpy_random(data) -> tuple:
    return (data[0], np.asarray(data[1], dtype=np.uint32), data[2], data[3], data[4])


__all__ = [
    "list_checkpoints",
    "load_checkpoint",
    "remove_stale_files",
    "resolve_checkpoint",
    "save_checkpoint",
]
