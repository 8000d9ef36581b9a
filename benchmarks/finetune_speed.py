"""Speed of Stable Diffusion fine-tuning per method: seconds per step (and steps/s, peak GPU memory on CUDA).

    python benchmarks/finetune_speed.py                                   # tiny config, CPU, every method
    python benchmarks/finetune_speed.py --sd15-shapes --device cuda       # SD 1.5 shapes, random weights, 512 px

Each method runs the real training loop (``terrasynth.train.finetune.finetune``) on a base saved as a diffusers
folder: the tiny test Stable Diffusion (32-px images), or, with ``--sd15-shapes``, components with Stable
Diffusion 1.5's real shapes and random weights (public weights cannot be fetched offline; speed and memory do not
depend on the values). The first ``--warmup`` steps are not counted; validation is off and the one checkpoint
comes after the last timed step. Data: ``--data`` (e.g. ../shared/data/landcoverai_pairs), else fake paired tiles
made at the training resolution. Prints a table, a ControlNet cost estimate, and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ holds the model builders and fake data

from tests.fake_sd import TINY_RESOLUTION, save_tiny_sd  # noqa: E402
from tests.fakes import make_paired_tiles  # noqa: E402

from terrasynth.train.finetune import METHODS, FinetuneConfig, finetune  # noqa: E402
from terrasynth.train.run import read_metrics  # noqa: E402

LANDCOVER_TRAIN_TILES = 857  # landcoverai_pairs train split (80 % of 1,071 pairs)


def measure(method: str, base: Path, data: Path, work: Path, args, resolution: int) -> dict:
    extra = {}
    if method == "dreambooth":
        extra = {"prompt": "aerial image of sks site", "num_class_images": 2, "class_image_steps": 2}
    config = FinetuneConfig(
        method=method,
        base=str(base),
        data=(str(data),),
        output_dir=str(work / f"run-{method}"),
        split="all",
        resolution=resolution,
        batch_size=args.batch,
        max_steps=args.warmup + args.steps,
        checkpoint_every=args.warmup + args.steps,
        keep_checkpoints=1,
        log_every=1,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        **extra,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    finetune(config, progress=False)
    wall = time.perf_counter() - started
    timed = [m for m in read_metrics(config.output_dir) if m["step"] > args.warmup]
    seconds = sum(m["step_s"] for m in timed) / len(timed)
    row = {
        "s_per_step": seconds,
        "steps_per_s": 1 / seconds,
        "final_loss": timed[-1]["last_loss"],
        "run_wall_s": wall,
    }
    if torch.cuda.is_available():
        row["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    shutil.rmtree(config.output_dir, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--sd15-shapes", action="store_true", help="Stable Diffusion 1.5 shapes, random weights")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--resolution", type=int, help=f"default {TINY_RESOLUTION} (tiny) or 512 (--sd15-shapes)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="default: fp16 on cuda")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--data", help="paired tiles to train on (default: fake tiles)")
    parser.add_argument("--work", help="folder for the base model and runs (default: a temporary one)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # accelerate's switch: stay on the CPU even beside a GPU
    if args.threads:
        torch.set_num_threads(args.threads)
    args.mixed_precision = args.mixed_precision or ("fp16" if args.device == "cuda" else "no")
    resolution = args.resolution or (512 if args.sd15_shapes else TINY_RESOLUTION)
    work = Path(args.work or tempfile.mkdtemp(prefix="finetune-speed-"))
    started = time.perf_counter()
    base = save_tiny_sd(work / "base", shapes="sd15" if args.sd15_shapes else "tiny")
    build_s = time.perf_counter() - started
    data = Path(args.data) if args.data else make_paired_tiles(work / "tiles", n=8, size=resolution)
    rows = {method: measure(method, base, data, work, args, resolution) for method in args.methods}
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)

    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    shapes = "Stable Diffusion 1.5 shapes, random weights" if args.sd15_shapes else "tiny test Stable Diffusion"
    print(
        f"{shapes}; {resolution} px, batch {args.batch}, mixed precision {args.mixed_precision}, gradient "
        f"checkpointing {'on' if args.gradient_checkpointing else 'off'}; mean of {args.steps} steps after "
        f"{args.warmup} warm-up; base built and saved in {build_s:.1f} s"
    )
    memory = torch.cuda.is_available() and args.device == "cuda"
    print(f"{'method':18s} {'s/step':>8s} {'steps/s':>8s}" + (f" {'peak GB':>8s}" if memory else ""))
    for method, row in rows.items():
        line = f"{method:18s} {row['s_per_step']:8.3f} {row['steps_per_s']:8.2f}"
        print(line + (f" {row['peak_memory_gb']:8.2f}" if memory else ""))
    if "controlnet" in rows:
        seconds = rows["controlnet"]["s_per_step"]
        epoch_steps = math.ceil(LANDCOVER_TRAIN_TILES / args.batch)
        print(
            f"ControlNet at these settings: one epoch of landcoverai_pairs ({LANDCOVER_TRAIN_TILES} train tiles, "
            f"{epoch_steps} steps) ≈ {epoch_steps * seconds / 3600:.2f} h; 10,000 steps ≈ "
            f"{10_000 * seconds / 3600:.2f} h"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "resolution": resolution, "methods": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
