"""Throughput of ``terrasynth synthesize`` against one ``terrasynth generate`` call per layout.

    python benchmarks/synthesize.py [--model default] [--data ../shared/data/landcoverai_pairs] [--n 64]
        [--steps 13] [--batch-size 8] [--processes 1 2] [--generate-calls 64] [--threads 2]

Every figure is the wall time of whole commands, as a user runs them (each starts Python, loads torch and the
model): ``synthesize`` over the first ``--n`` masks of the data's test split with 1 and 2 processes
(``--threads`` CPU threads in all, split between the processes), and ``--generate-calls`` one-image ``generate``
calls over the same masks. ``synthesize`` also prints its own images/s with the model load time apart. Prints a
table and the command that made it. On a GPU, pass ``--processes 1`` and a larger ``--batch-size``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "landcoverai_pairs"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=64, help="layouts (one image each)")
    parser.add_argument("--steps", type=int, default=13)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--generate-calls", type=int, default=64, help="one-image generate calls (0: none)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all")
    parser.add_argument("--work", default="/tmp/terrasynth-bench-synthesize")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the pipeline's own batched speed (benchmarks/speed.py's way)"
    )
    return parser.parse_args(argv)


def layouts_csv(args, work: Path) -> tuple[Path, list[Path]]:
    """A CSV of the first ``--n`` masks of the split (sorted ids), and the mask paths."""
    from terrasynth.data.paired_tiles import PairedTiles

    data = PairedTiles(args.data, args.split)
    masks = [mask for _, mask in data.files[: args.n]]
    path = work / "layouts.csv"
    path.write_text("layout\n" + "".join(f"{m.resolve()}\n" for m in masks), encoding="utf-8")
    return path, masks


def timed(command: list[str], threads: int) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def run_synthesize(args, csv_path: Path, work: Path, processes: int) -> dict:
    out = work / f"synth-{processes}"
    shutil.rmtree(out, ignore_errors=True)
    cli = ["-m", "terrasynth.cli", "synthesize", str(csv_path), "--out", str(out), "--model", args.model]
    cli += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seed", "0", "-q"]
    if processes == 1:
        command = [sys.executable, *cli]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes"]
        command += [str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *cli]
    seconds, stdout = timed(command, max(1, args.threads // processes))
    match = re.search(r"([\d.]+) images/s .* model load ([\d.]+) s", stdout)
    return {
        "wall_s": seconds,
        "images_per_s": float(match.group(1)) if match else float("nan"),
        "load_s": float(match.group(2)) if match else float("nan"),
        "out": out,
    }


def run_generate_calls(args, masks: list[Path], work: Path) -> float:
    out = work / "generate"
    shutil.rmtree(out, ignore_errors=True)
    total = 0.0
    for index, mask in enumerate(masks[: args.generate_calls]):
        command = [sys.executable, "-m", "terrasynth.cli", "generate", "--layout", str(mask), "--n", "1"]
        command += ["--seed", str(index), "--steps", str(args.steps), "--model", args.model, "--out", str(out), "-q"]
        seconds = timed(command, args.threads)[0]
        total += seconds
        print(f"generate call {index + 1}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return total


def pipeline_images_per_second(args, masks: list[Path]) -> float:
    """The embedded pipeline's own batched speed, in this process, as benchmarks/speed.py measures it: one batch
    of ``--batch-size`` images of the first layout after a warm-up, ``--threads`` threads."""
    import torch

    from terrasynth.data.images import read_mask
    from terrasynth.generate.api import load_pipeline

    torch.set_num_threads(args.threads)
    pipeline = load_pipeline(args.model).generator
    layout = read_mask(masks[0])
    pipeline("aerial image", layout=layout, num_images=2, num_inference_steps=2, seed=0)  # warm-up
    start = time.perf_counter()
    batch = args.batch_size
    pipeline("aerial image", layout=layout, num_images=batch, num_inference_steps=args.steps, seed=1, batch_size=batch)
    return args.batch_size / (time.perf_counter() - start)


def max_pixel_difference(a: Path, b: Path) -> tuple[bool, int]:
    """(same file names, the largest difference of any pixel between same-named images)."""
    import numpy as np
    from PIL import Image

    names_a = sorted(p.name for p in (a / "images").iterdir())
    names_b = sorted(p.name for p in (b / "images").iterdir())
    worst = 0
    for name in set(names_a) & set(names_b):
        with Image.open(a / "images" / name) as x, Image.open(b / "images" / name) as y:
            diff = np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max()
        worst = max(worst, int(diff))
    return names_a == names_b, worst


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    csv_path, masks = layouts_csv(args, work)
    rows = []
    runs = {}
    for processes in args.processes:
        runs[processes] = run_synthesize(args, csv_path, work, processes)
        r = runs[processes]
        name = f"synthesize, {processes} process(es), batch {args.batch_size}"
        rows.append((name, r["wall_s"], r["images_per_s"], r["load_s"]))
        print(f"{name}: {r['wall_s']:.1f} s wall, {r['images_per_s']:.3f} images/s", file=sys.stderr, flush=True)
    generate_s = run_generate_calls(args, masks, work) if args.generate_calls else None
    baseline = None if args.no_baseline else pipeline_images_per_second(args, masks)
    from PIL import Image

    with Image.open(masks[0]) as first:
        size = "×".join(str(v) for v in first.size)
    print(f"# {len(masks)} layouts ({size} px) of {args.data} [{args.split}], {args.steps} steps, model {args.model}")
    print(f"# {platform.processor() or platform.machine()}, {args.threads} CPU threads in all, {os.cpu_count()} cores")
    print(f"{'run':<44} {'wall s':>8} {'images/s':>9} {'load s':>7}")
    for name, wall, rate, load in rows:
        print(f"{name:<44} {wall:>8.1f} {rate:>9.3f} {load:>7.1f}")
    if baseline is not None:
        print(f"{f'the pipeline alone, batch {args.batch_size} (speed.py)':<44} {'':>8} {baseline:>9.3f}")
        if 1 in runs:
            print(f"synthesize (1 process) / the pipeline alone: {runs[1]['images_per_s'] / baseline:.2f}")
    if generate_s is not None:
        calls = min(args.generate_calls, len(masks))
        print(f"{f'{calls} generate calls, one image each':<44} {generate_s:>8.1f} {calls / generate_s:>9.3f}")
        if 1 in runs and calls == len(masks):
            print(f"one synthesize run vs {calls} generate calls: {generate_s / runs[1]['wall_s']:.1f}× faster")
    if 1 in runs and 2 in runs:
        same, worst = max_pixel_difference(runs[1]["out"], runs[2]["out"])
        print(f"2 processes vs 1: same item set {same}, max pixel difference {worst}/255 (watermarks included)")
    print("command: python benchmarks/synthesize.py " + " ".join(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
