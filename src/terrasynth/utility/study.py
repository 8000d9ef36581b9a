"""``run_study``: data → grid → runs → tables and plots, the one call behind ``terrasynth utility``.

Outputs in ``OUT``: ``study.json`` (task, data, generator, config), ``runs/<run id>.json`` (one per run),
``summary.md`` / ``summary.csv`` / ``summary.json``, ``curves.png``; caches in ``OUT/cache`` and, for a model
generator, generated images in ``OUT/synthetic``. Rerunning the same command resumes: finished runs are read,
not redone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..config import config_to_dict
from ..errors import InputError
from ..files import write_json_atomic
from .experiments import (
    ALL,
    ClassificationStudyConfig,
    SegmentationStudyConfig,
    estimate_seconds,
    plan_cells,
    run_grid,
)
from .summary import write_report

log = logging.getLogger(__name__)

TASKS = ("classify", "segment")


def quick_config(task: str, **changes):
    """A small grid for a first look (a few minutes of training on 2 cores)."""
    if task == "classify":
        base = ClassificationStudyConfig(
            shots=(5, 10),
            seeds=3,
            learners=("small_cnn",),
            conditions=("real", "real+synthetic", "synthetic"),
            steps=120,
            size=64,
            max_eval_per_class=40,
            max_synthetic_per_class=20,
        )
    else:
        base = SegmentationStudyConfig(shots=(25,), seeds=3, steps=120, size=64, max_eval=32)
    return dataclasses.replace(base, **changes)


def parse_shots(text: str) -> tuple:
    """``"5,10,all"`` → ``(5, 10, "all")``."""
    shots = []
    for item in text.split(","):
        item = item.strip().lower()
        if item == ALL:
            shots.append(ALL)
        elif item.isdigit() and int(item) > 0:
            shots.append(int(item))
        else:
            raise InputError(None, f"--shots wants positive integers or 'all', got {item!r}", "e.g. --shots 5,10,all")
    return tuple(shots)


def parse_list(text: str, kind=str, name: str = "") -> tuple:
    try:
        return tuple(kind(item.strip()) for item in text.split(",") if item.strip())
    except ValueError:
        raise InputError(None, f"{name} wants a comma-separated list, got {text!r}") from None


def format_seconds(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{seconds:.0f} s"


def run_study(
    task: str,
    real: str | Path,
    generator: str | Path,
    out_dir: str | Path,
    config: ClassificationStudyConfig | SegmentationStudyConfig,
    progress: bool = False,
    echo: Callable[[str], None] = log.info,
    pipeline_bundle: tuple | None = None,
) -> dict:
    """Run (or resume) a study and write its report; returns :func:`summary.write_report`'s dict plus the plan.

    ``echo`` receives the human-readable progress lines (the CLI prints them; the library logs them)."""
    from .inputs import load_classification_data, load_segmentation_data

    if task not in TASKS:
        raise InputError(None, f"unknown utility task {task!r}", f"use one of {', '.join(TASKS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out_dir / "study.json",
        {"task": task, "real": str(real), "generator": str(generator), "config": config_to_dict(config)},
    )
    started = time.perf_counter()
    load = load_classification_data if task == "classify" else load_segmentation_data
    data = load(real, generator, out_dir, config, progress=progress, pipeline_bundle=pipeline_bundle)
    echo(
        f"data ready in {format_seconds(time.perf_counter() - started)}: {len(data.train_images)} real train, "
        f"{len(data.eval_images)} real {config.eval_split} images"
    )
    cells = plan_cells(config)
    estimate = estimate_seconds(config, cells, len(data.eval_images))
    echo(
        f"{len(cells)} runs planned; expected training time about {format_seconds(estimate)} on 2 CPU cores "
        "(finished runs are skipped)"
    )
    state = {"done": 0, "spent": 0.0, "start": time.perf_counter()}

    def on_run(cell, record, skipped):
        state["done"] += 1
        if skipped:
            echo(f"[{state['done']}/{len(cells)}] {cell.run_id}: {100 * record['score']:.1f} (done before)")
            return
        state["spent"] += time.perf_counter() - state["start"]
        state["start"] = time.perf_counter()
        echo(
            f"[{state['done']}/{len(cells)}] {cell.run_id}: {record['metric']} {100 * record['score']:.1f} "
            f"({record['real_images']} real + {record['synthetic_images']} synthetic, "
            f"{record['train_seconds']:.0f} s)"
        )

    run_grid(config, data, out_dir, cells, on_run)
    title = f"utility: {task} on {Path(str(real)).name}"
    report = write_report(out_dir, title)
    report["cells"] = len(cells)
    report["estimate_seconds"] = estimate
    return report
