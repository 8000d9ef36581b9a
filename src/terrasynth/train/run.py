"""What every training loop here shares: the run folder, resume, checkpoint schedule, metric log, EMA."""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

import torch

from ..config import config_to_dict
from ..files import write_json_atomic
from .checkpoints import list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


class EMA:
    """Exponential moving average of a model's weights, with the usual warm-up (decay grows with the step)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
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
        write_json_atomic(self.dir / "config.json", config_to_dict(config))
        self.metrics_path = self.dir / "metrics.jsonl"
        self.started = time.time()

    def resume(self, resume: str | None, models: dict, optimizer) -> int:
        """Restore the checkpoint named by ``resume`` ("latest" or a path); return the step to continue from."""
        checkpoint = resolve_checkpoint(self.dir, resume)
        if checkpoint is None:
            if resume == "latest":
                log.info("no checkpoint in %s yet: starting from step 0", self.dir)
            return 0
        state = load_checkpoint(checkpoint, models, optimizer)
        step = int(state["step"])
        self._truncate_metrics(step)
        log.info("resumed from %s at step %d", checkpoint, step)
        return step

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint, which the resumed run will log again."""
        if not self.metrics_path.exists():
            return
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
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
