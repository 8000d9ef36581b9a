"""Utility figures: does synthetic imagery help when labelled data is scarce?

    # the default grids (about 70 min of training on 2 CPU cores, plus a one-off, cached generation)
    python benchmarks/utility.py --generator default --out utility-results
    # a few-minute look; the issue's full grid (shots 5,10,25,50,all; both learners; 3 seeds) with --full
    python benchmarks/utility.py --quick
    python benchmarks/utility.py --full --size 256

Classification (rsscn7): real only / real + synthetic / synthetic only / bridged (train on synthetic, fine-tune on
real; Li et al. 2024) at few real images per class, EfficientNet-Lite0 (ImageNet, offline) and a small CNN from
scratch; synthetic scenes generated per class from the class name's paraphrases. Segmentation
(landcoverai_pairs): real pairs vs real pairs + synthetic images generated from the same real layouts (exact
labels by construction). Scores are on the real test split, mean ± std over seeds; Δ is the paired difference
against real only with its 95 % t interval, "within noise" when it includes 0. Each run is one JSON under
OUT/<task>/runs; rerunning the command resumes a killed grid.

Target (issue 6): ≥ 3 points from adding synthetic data at 10 images per class (classification) and at 25 pairs
(segmentation). If the data show none, compare with the realism figures (benchmarks/realism.py: FD/KID,
precision/recall — fidelity and diversity — and layout fidelity) to say what limits it.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from terrasynth.utility.experiments import ClassificationStudyConfig, SegmentationStudyConfig
from terrasynth.utility.study import format_seconds, parse_list, parse_shots, quick_config, run_study

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = {"classify": (10, 3.0), "segment": (25, 3.0)}  # (shots, points)


def default_configs(args) -> dict:
    """The benchmark's default grid: fewer cells than the issue's full grid so it fits 90 min on 2 cores."""
    if args.quick:
        return {"classify": quick_config("classify"), "segment": quick_config("segment")}
    if args.full:
        return {"classify": ClassificationStudyConfig(), "segment": SegmentationStudyConfig()}
    return {
        "classify": ClassificationStudyConfig(
            shots=(5, 10, 25), seeds=3, steps=100, size=96, max_eval_per_class=40, max_synthetic_per_class=50
        ),
        "segment": SegmentationStudyConfig(shots=(25, 50, 100), seeds=3, steps=150, size=128, max_eval=64),
    }


def apply_overrides(config, task: str, args):
    changes = {}
    for name in ("seeds", "steps", "size", "generation_steps"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.ratio:
        changes["ratios"] = parse_list(args.ratio, float, "--ratio")
    shots = args.classify_shots if task == "classify" else args.segment_shots
    if shots:
        changes["shots"] = parse_shots(shots)
    if task == "classify":
        if args.learners:
            changes["learners"] = parse_list(args.learners, str, "--learners")
        if args.generation_size is not None:
            changes["generation_size"] = args.generation_size
    return dataclasses.replace(config, **changes)


def target_line(task: str, differences: list[dict]) -> str:
    shots, points = TARGETS[task]
    rows = [d for d in differences if d["condition"] == "real+synthetic" and d["shots"] == shots]
    if not rows:
        return f"target ({task}): no real+synthetic cell at {shots} to compare"
    parts = []
    for row in rows:
        met = row["mean"] >= points and row["verdict"] == "gain"
        parts.append(
            f"{row['learner']} ratio {row['ratio']:g}: {row['mean']:+.1f} points ({row['verdict']}) -> "
            + ("met" if met else "NOT met")
        )
    unit = "images per class" if task == "classify" else "pairs"
    return f"target ({task}, >= {points:g} points at {shots} {unit}): " + "; ".join(parts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(DATA_ROOT), help="folder with rsscn7/ and landcoverai_pairs/")
    parser.add_argument("--generator", default="default", help="model name or folder used for both tasks")
    parser.add_argument("--classify-synthetic", help="ready scene-folder tree of synthetic images (skips generation)")
    parser.add_argument("--segment-synthetic", help="ready folder of <id>-000.png images (skips generation)")
    parser.add_argument("--out", default="utility-results", help="results folder (OUT/classify, OUT/segment)")
    parser.add_argument("--tasks", default="classify,segment")
    parser.add_argument("--quick", action="store_true", help="a small grid (minutes)")
    parser.add_argument("--full", action="store_true", help="the issue's full grid (hours on 2 cores)")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--ratio", help="synthetic-to-real ratio(s), e.g. 0.5,1,4")
    parser.add_argument("--classify-shots")
    parser.add_argument("--segment-shots")
    parser.add_argument("--learners")
    parser.add_argument("--generation-steps", type=int)
    parser.add_argument("--generation-size", type=int)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data_root, out = Path(args.data_root), Path(args.out)
    configs = default_configs(args)
    sources = {
        "classify": (data_root / "rsscn7", args.classify_synthetic or args.generator),
        "segment": (data_root / "landcoverai_pairs", args.segment_synthetic or args.generator),
    }
    print(
        f"# utility benchmark ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)"
    )
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    results = {}
    for task in parse_list(args.tasks, str, "--tasks"):
        config = apply_overrides(configs[task], task, args)
        real, generator = sources[task]
        print(f"\n## {task}: {real} with generator {generator}")
        started = time.perf_counter()
        report = run_study(task, real, generator, out / task, config, progress=False, echo=print)
        print(f"\n{report['table']}")
        print(target_line(task, report["differences"]))
        print(
            f"plot: {report['plot']}; table: {out / task / 'summary.md'}; runs: {out / task / 'runs'}; "
            f"wall time {format_seconds(time.perf_counter() - started)} "
            f"(estimated {format_seconds(report['estimate_seconds'])})"
        )
        results[task] = report
    print(f"\ncommand: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
