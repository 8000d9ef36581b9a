"""One model's realism over several split pairings: the layouts of one split generated and scored (FD_effnet,
KID_effnet, layout mIoU) against the real tiles of another, beside those real tiles' own scores (the pairing's
floor).

    python benchmarks/split_pairings.py --model default --pairings test:val,val:test --steps 10,16 \
        --json runs/pairings.json

Why: the realism table (benchmarks/realism.py) scores one pairing, the test layouts against held-out test tiles.
KID on 91 tiles moves by about its own std from one pairing to another, so a change to the model or the sampler
is only credited here when it holds in every pairing (docs/realism.md, sessions 16 and 17). Each pairing is a
``benchmarks/guidance.py`` run; generated images are cached in ``--work`` per pairing, model, sampler, steps and
seed. ``--generation-seeds 0,1`` shows how far a figure moves with the generation seed alone (same tiles, same
reference).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guidance  # noqa: E402
from terrasynth.files import write_json_atomic  # noqa: E402
from terrasynth.generate.schedulers import DEFAULT_SCHEDULER  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--model", default="default")
    parser.add_argument("--pairings", default="test:val,val:test", help="LAYOUT_SPLIT:REFERENCE_SPLIT, comma-separated")
    parser.add_argument("--limit", type=int, default=91, help="tiles of each split (seeded sample)")
    parser.add_argument("--steps", help="sampling steps, comma-separated (default: the model's own)")
    parser.add_argument("--scale", default="3", help="guidance: SCALE or SCALE@LOW-HIGH")
    parser.add_argument("--scheduler", default=DEFAULT_SCHEDULER)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--segmenter", help="layout segmenter folder (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tile samples and KID's subsets")
    parser.add_argument(
        "--generation-seeds", default="0", help="seeds of the generated images, comma-separated: a row for each"
    )
    parser.add_argument("--work", default="pairings-work", help="cache of generated images")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def parse_pairings(text: str) -> list[tuple[str, str]]:
    pairings = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 2 or not all(parts):
            raise SystemExit(f"--pairings: {item.strip()!r} is not LAYOUT_SPLIT:REFERENCE_SPLIT")
        pairings.append((parts[0], parts[1]))
    return pairings


def parse_numbers(text: str, flag: str, minimum: int) -> list[int]:
    try:
        numbers = [int(s) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"{flag}: {text!r} is not a comma-separated list of whole numbers") from None
    if min(numbers) < minimum:
        raise SystemExit(f"{flag}: each must be at least {minimum}")
    return numbers


def main(argv=None, bundle=None) -> list[dict]:
    """One row per pairing, step count and generation seed; ``bundle`` (pipeline, model id, sha256) stands in
    for ``--model``."""
    args = parse_args(argv)
    pairings = parse_pairings(args.pairings)
    step_counts = None if args.steps is None else parse_numbers(args.steps, "--steps", minimum=1)
    generation_seeds = parse_numbers(args.generation_seeds, "--generation-seeds", minimum=0)
    if bundle is None:  # loaded once, not once per guidance.py run
        from terrasynth.generate.api import load_pipeline

        bundle = load_pipeline(args.model, args.scheduler)
    if step_counts is None:
        from terrasynth.generate.pipeline import resolve_steps

        step_counts = [resolve_steps(bundle[0], None)]
    rows = []
    for (layouts_split, reference_split), steps, generation_seed in itertools.product(
        pairings, step_counts, generation_seeds
    ):
        guidance_argv = [
            "--data", args.data, "--model", args.model, "--split", layouts_split, "--limit", str(args.limit),
            "--reference-split", reference_split, "--reference-limit", str(args.limit), "--scales", args.scale,
            "--steps", str(steps), "--scheduler", args.scheduler, "--size", str(args.size),
            "--seed", str(args.seed), "--generation-seed", str(generation_seed),
            "--work", str(Path(args.work) / f"{layouts_split}-{reference_split}"),
        ]  # fmt: skip
        if args.segmenter:
            guidance_argv += ["--segmenter", args.segmenter]
        if args.quiet:
            guidance_argv.append("--quiet")
        results = guidance.main(guidance_argv, bundle=bundle)
        floor, model_row = results["real tiles"], next(v for k, v in results.items() if k != "real tiles")
        rows.append(
            {
                "layouts": layouts_split,
                "reference": reference_split,
                "steps": steps,
                "generation_seed": generation_seed,
                "guidance": args.scale,
                "scheduler": args.scheduler,
                "n": args.limit,
                "model": model_row,
                "real_tiles": floor,
                "KID_ratio": model_row["KID_effnet"] / floor["KID_effnet"],
            }
        )
    print(f"\npython benchmarks/split_pairings.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(markdown_table(rows))
    if args.json:
        write_json_atomic(Path(args.json), rows)
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| layouts → reference | steps | seed | FD_effnet | KID_effnet | KID / real tiles' | mIoU "
        "| real tiles: FD, KID, mIoU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        model, real = row["model"], row["real_tiles"]
        lines.append(
            f"| {row['layouts']} → {row['reference']} | {row['steps']} | {row['generation_seed']} | "
            f"{model['FD_effnet']:.1f} | "
            f"{model['KID_effnet']:.4f} ± {model['KID_effnet_std']:.4f} | {row['KID_ratio']:.2f}× | "
            f"{model['mIoU']:.3f} | {real['FD_effnet']:.1f}, {real['KID_effnet']:.4f}, {real['mIoU']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
