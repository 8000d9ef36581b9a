"""What every training loop here shares: the run folder, resume, checkpoint schedule, metric log, EMA."""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..config import config_to_dict
from ..errors import InputError
from ..files import write_json_atomic
from .checkpoints import list_checkpoints, load_checkpoint, remove_stale_files, resolve_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


# What latents the decoder and denoiser train on: a posterior sample, or its mode (the mean).
POSTERIOR_CHOICES = ("sample", "mode")


def step_seed(seed: int, *keys: int) -> int:
    """A 64-bit seed for one draw of the training randomness, e.g. ``step_seed(seed, BATCH, step)``.

    Each step's random choices come from a generator seeded by (seed, stream, step) alone, so a resumed run
    draws exactly what an uninterrupted one would, with no generator state to save. numpy's ``SeedSequence``
    mixes the keys, so neighbouring steps (and seeds) get unrelated streams.
    """
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0])


def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`step_seed`."""
    return torch.Generator().manual_seed(step_seed(seed, *keys))


def learning_rate_at(step: int, base: float, warmup_steps: int, max_steps: int, decay_steps: int = 0) -> float:
    """Warm-up, constant, then linear decay to zero over the last ``decay_steps`` before ``max_steps``.

    The warmup-stable-decay schedule (Hägele et al. 2024): the constant phase can be extended on resume by
    raising ``max_steps``, and a short cool-down at the end buys most of what a full cosine schedule would.
    """
    scale = min(1.0, (step + 1) / max(1, warmup_steps))
    if decay_steps > 0:
        scale = min(scale, max(0.0, (max_steps - step) / decay_steps))
    return base * scale


class EMA:
    """Exponential moving average of a model's weights, with the usual warm-up (decay grows with the step)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        device = next(model.parameters()).device
        if next(self.model.parameters()).device != device:
            # made before the trainer moved the model to its accelerator: follow it there
            self.model.to(device)
        for ema_param, param in zip(self.model.parameters(), model.parameters()):
            ema_param.lerp_(param.detach().to(ema_param.dtype), 1 - decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


class TrainingRun:
    """A run folder: ``config.json``, ``metrics.jsonl`` (one line per logged step), ``checkpoint-*``."""

    def __init__(self, run_dir: str | Path, config, keep_checkpoints: int = 3):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep_checkpoints
        self.config = config
        self.metrics_path = self.dir / "metrics.jsonl"
        self.started = time.time()
        self.resumed_state: dict = {}  # the checkpoint's state.json after resume(), else empty

    def resume(self, resume: str | None, models: dict, optimizer) -> int:
        """Restore the checkpoint named by ``resume`` ("latest" or a path); return the step to continue from.
        Partial checkpoints and temporary files a killed run left in the folder are removed first (and logged)."""
        if resume is None and list_checkpoints(self.dir):
            raise InputError(
                self.dir,
                "run folder already holds checkpoints",
                "pass --resume latest to continue that run, or choose a new --out",
            )
        remove_stale_files(self.dir)
        write_json_atomic(self.dir / "config.json", config_to_dict(self.config))
        checkpoint = resolve_checkpoint(self.dir, resume)
        if checkpoint is None:
            if resume == "latest":
                log.info("no checkpoint in %s yet: starting from step 0", self.dir)
            self._truncate_metrics(0)  # steps logged by a run killed before its first checkpoint
            return 0
        state = load_checkpoint(checkpoint, models, optimizer)
        self.resumed_state = state
        step = int(state["step"])
        self._truncate_metrics(step)
        log.info("resumed from %s at step %d", checkpoint, step)
        return step

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint, which the resumed run will log again, and a last
        line cut short by the kill."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def checkpoint(self, step: int, models: dict, optimizer, extra: dict | None = None) -> Path:
        return save_checkpoint(self.dir, step, models, optimizer, extra, keep=self.keep)

    def log_metrics(self, step: int, **values) -> None:
        record = {"step": step, "time_s": round(time.time() - self.started, 2), **values}
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def latest_checkpoint(self) -> Path | None:
        checkpoints = list_checkpoints(self.dir)
        return checkpoints[-1] if checkpoints else None


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
