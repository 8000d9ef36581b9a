"""Tune classifier-free guidance on a split the realism table does not use: layout fidelity (mIoU, pixel accuracy
of the shipped segmenter against the input layout) and FD/KID on effnet features, per guidance scale.

    python benchmarks/guidance.py --data ../shared/data/landcoverai_pairs --split val --limit 32 --scales 1,2,3,4,6

The reference set for FD/KID is ``--reference-limit`` tiles of ``--reference-split`` (train by default), so the
scores compare scales with each other; they are not the realism table's figures (those are on the test split).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realism import generate_model_set, guidance_label, load_split, parse_guidance, stack  # noqa: E402
from terrasynth.evaluate.evaluation import check_set_size  # noqa: E402
from terrasynth.evaluate.features import build_extractor  # noqa: E402
from terrasynth.evaluate.layout_fidelity import SHIPPED_SEGMENTER, layout_scores, load_segmenter  # noqa: E402
from terrasynth.evaluate.metrics import frechet_distance, kid  # noqa: E402
from terrasynth.generate.schedulers import DEFAULT_SCHEDULER  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=32, help="layouts per guidance scale (seeded sample)")
    parser.add_argument("--reference-split", default="train")
    parser.add_argument("--reference-limit", type=int, default=200)
    parser.add_argument("--model", default="default")
    parser.add_argument("--scales", default="1,2,3,4,6", help="SCALE or SCALE@LOW-HIGH (guidance interval)")
    parser.add_argument("--guidance-rescale", type=float, default=0.0, help="guidance rescale φ (Lin et al. 2024)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    parser.add_argument("--scheduler", default=DEFAULT_SCHEDULER)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--segmenter", default=str(SHIPPED_SEGMENTER))
    parser.add_argument("--seed", type=int, default=0, help="seed of the tile samples and KID's subsets")
    parser.add_argument(
        "--generation-seed", type=int, help="seed of the generated images (default: --seed); tiles stay the same"
    )
    parser.add_argument("--work", default="guidance-work", help="cache of generated images")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


class Scoring:
    """What every image set of one run is scored against: the evaluated tiles' layouts, the reference tiles'
    effnet features, the segmenter, and the real tiles' own row."""

    def __init__(self, args):
        self.seed = args.seed
        self.evaluated = load_split(args.data, args.split, args.size, args.limit, args.seed)
        reference = load_split(args.data, args.reference_split, args.size, args.reference_limit, args.seed)
        check_set_size(len(self.evaluated), f"split {args.split!r}")
        self.layouts = list(stack(self.evaluated, "layout"))
        self.segmenter = load_segmenter(args.segmenter)
        self.effnet = build_extractor("effnet", effnet_size=args.size)
        self.reference_features = self.effnet.features(stack(reference, "image"))
        self.real_tiles = self.scores(stack(self.evaluated, "image"))

    def scores(self, images) -> dict:
        features = self.effnet.features(images)
        layout = layout_scores(self.segmenter, list(images), self.layouts)
        k = kid(self.reference_features, features, subsets=100, seed=self.seed)
        return {
            "mIoU": layout["miou"],
            "pixel_accuracy": layout["pixel_accuracy"],
            "IoU_per_class": layout["iou_per_class"],
            "FD_effnet": float(frechet_distance(self.reference_features, features)),
            "KID_effnet": k["mean"],
            "KID_effnet_std": k["std"],
        }


# Scorings built in this process, by everything they depend on: split_pairings.py runs main() once per step
# count and seed of a pairing, and the tiles, reference features and real tiles' row are the same each time.
_SCORINGS: dict[tuple, Scoring] = {}


def scoring_for(args) -> Scoring:
    key = (args.data, args.split, args.limit, args.reference_split, args.reference_limit, args.size)
    key += (args.segmenter, args.seed)
    if key not in _SCORINGS:
        _SCORINGS[key] = Scoring(args)
    return _SCORINGS[key]


def main(argv=None, bundle=None) -> dict:
    """The figures per guidance scale; ``bundle`` (pipeline, model id, sha256) stands in for ``--model``."""
    from terrasynth.generate.api import load_pipeline
    from terrasynth.generate.pipeline import resolve_steps

    args = parse_args(argv)
    scoring = scoring_for(args)
    evaluated, layouts, segmenter, scores = scoring.evaluated, scoring.layouts, scoring.segmenter, scoring.scores
    bundle = bundle or load_pipeline(args.model, args.scheduler)
    args.steps = resolve_steps(bundle[0], args.steps)
    results = {"real tiles": scoring.real_tiles}
    for scale, interval in parse_guidance(args.scales):
        images = generate_model_set(
            bundle,
            evaluated,
            Path(args.work),
            args.scheduler,
            args.steps,
            args.size,
            scale,
            args.seed if args.generation_seed is None else args.generation_seed,
            not args.quiet,
            interval,
            args.guidance_rescale,
        )
        results[f"guidance {guidance_label(scale, interval, args.guidance_rescale)}"] = scores(images)
    print(f"python benchmarks/guidance.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"model {bundle[1]} (sha256 {bundle[2][:12]}), {args.scheduler} {args.steps} steps, N = {len(layouts)}")
    class_names = segmenter.config.class_names
    print(f"{'':16s} {'mIoU':>7s} {'pix acc':>8s} {'FD_effnet':>10s} {'KID_effnet':>11s}   IoU per class")
    for name, row in results.items():
        per_class = " ".join(
            f"{c}={'-' if v is None else f'{v:.2f}'}" for c, v in zip(class_names, row["IoU_per_class"])
        )
        print(
            f"{name:16s} {row['mIoU']:7.3f} {row['pixel_accuracy']:8.3f} {row['FD_effnet']:10.1f} "
            f"{row['KID_effnet']:11.4f}   {per_class}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
