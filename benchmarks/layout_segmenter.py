"""The layout segmenter's per-class IoU on real tiles and on the model's images, for one or more segmenters: does
layout fidelity see every class (buildings above all)?

    python benchmarks/layout_segmenter.py --segmenters shipped,runs/seg/balanced --splits test,val

For each segmenter: IoU per class on the real tiles of each ``--splits`` split against their masks; on the
model's images generated from the first split's layouts (the realism benchmark's cached set under ``--work``,
generated if missing); and on the demo's hand-drawn layouts (``--demo-per-layout`` images each), with how many of
their buildings and water bodies are drawn (at least half their pixels segmented as that class). Also, with no
segmenter, how each class looks inside the layouts (``evaluate/defects.py``, ``appearance_ratios``): mean luma and
local texture of the generated images against the real tiles of the same layouts, with 95 % bootstrap intervals
over layouts (water drawn as a dark, flat blob shows as ratios below 1). Prints the tables and the command;
writes ``--json`` atomically.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realism  # noqa: E402
from terrasynth.evaluate.defects import appearance_ratios  # noqa: E402
from terrasynth.evaluate.layout_fidelity import SHIPPED_SEGMENTER, layout_scores, load_segmenter  # noqa: E402
from terrasynth.files import write_json_atomic  # noqa: E402
from terrasynth.generate.schedulers import DEFAULT_SCHEDULER  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--splits", default="test,val", help="real splits scored; the first one's layouts are drawn")
    parser.add_argument("--segmenters", default="shipped", help="comma-separated folders ('shipped': the shipped one)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, help="at most this many tiles per split (seeded sample, as realism.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generation-seed", type=int, default=0)
    parser.add_argument("--scheduler", default=DEFAULT_SCHEDULER)
    parser.add_argument("--demo-per-layout", type=int, default=3, help="images per demo layout (0: none)")
    parser.add_argument("--work", default="runs/realism-work", help="cache of generated images (shared with realism)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv=None, bundle=None) -> dict:
    args = parse_args(argv)
    command = "python benchmarks/layout_segmenter.py " + " ".join(sys.argv[1:] if argv is None else argv)
    splits = args.splits.split(",")
    real = {split: realism.load_split(args.data, split, args.size, args.limit, args.seed) for split in splits}
    # the realism benchmark draws as many layouts as the smaller of its two splits: the same set, the same cache
    evaluated = real[splits[0]]
    if len(splits) > 1:
        evaluated = realism.Subset(evaluated.dataset, evaluated.indices[: min(len(evaluated), len(real[splits[1]]))])
    if bundle is None:
        from terrasynth.generate.api import load_pipeline

        bundle = load_pipeline(args.model, args.scheduler)
    from terrasynth.generate.pipeline import resolve_guidance_scale, resolve_steps

    steps, guidance = resolve_steps(bundle[0], None), resolve_guidance_scale(bundle[0], None)
    generated = realism.generate_model_set(
        bundle,
        evaluated,
        Path(args.work),
        args.scheduler,
        steps,
        args.size,
        guidance,
        args.generation_seed,
        not args.quiet,
    )
    generated_layouts = list(realism.stack(evaluated, "layout"))

    results = {"command": command, "model": bundle[1], "model_sha256": bundle[2], "segmenters": {}}
    real_images = list(realism.stack(evaluated, "image"))
    appearance = {}
    for index, name in enumerate(evaluated.class_table.names):
        appearance[name] = appearance_ratios(list(generated), real_images, generated_layouts, index, seed=args.seed)
    results["class_appearance"] = appearance
    for name in args.segmenters.split(","):
        folder = SHIPPED_SEGMENTER if name == "shipped" else Path(name)
        segmenter = load_segmenter(folder)
        entry = {}
        for split, dataset in real.items():
            scores = layout_scores(
                segmenter, list(realism.stack(dataset, "image")), list(realism.stack(dataset, "layout"))
            )
            entry[f"real {split}"] = scores
        entry[f"generated ({splits[0]} layouts)"] = layout_scores(segmenter, list(generated), generated_layouts)
        demo = None
        if args.demo_per_layout > 0:
            demo = realism.demo_layout_scores(
                bundle,
                segmenter,
                Path(args.work),
                (args.scheduler, steps, guidance),
                args.demo_per_layout,
                args.generation_seed,
                not args.quiet,
            )
        results["segmenters"][str(folder)] = {"scores": entry, "demo_layouts": demo}

    print(f"command: {command}")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"model {bundle[1]} (sha256 {bundle[2][:12]}), {args.scheduler}, {steps} steps, guidance {guidance:g}, "
        f"generation seed {args.generation_seed}; N = {len(evaluated)} generated, real: "
        + ", ".join(f"{s} {len(d)}" for s, d in real.items())
    )
    print(f"how each class looks inside the {splits[0]} layouts (erosion 2 px): generated against real tiles")
    print(f"  {'class':12s} {'pixels':>9s} {'luma real':>10s} {'generated':>10s} {'ratio [95 % interval]':>22s} "
          f"{'texture real':>13s} {'generated':>10s} {'ratio [95 % interval]':>22s}")  # fmt: skip
    for name, look in appearance.items():
        real_look, generated_look = look["real"], look["generated"]
        if not real_look["pixels"]:
            print(f"  {name:12s} {0:9d}  (no layout holds it)")
            continue
        luma_low, luma_high = look["luma_interval"]
        texture_low, texture_high = look["texture_interval"]
        print(
            f"  {name:12s} {real_look['pixels']:9d} {real_look['luma']:10.3f} {generated_look['luma']:10.3f} "
            f"{look['luma_ratio']:6.2f} [{luma_low:.2f}, {luma_high:.2f}]    {real_look['texture']:13.4f} "
            f"{generated_look['texture']:10.4f} {look['texture_ratio']:6.2f} [{texture_low:.2f}, {texture_high:.2f}]"
        )
    for folder, result in results["segmenters"].items():
        names = load_segmenter(Path(folder)).config.class_names
        print(f"segmenter {folder}")
        print(f"  {'':28s} {'mIoU':>6s} " + " ".join(f"{n[:9]:>9s}" for n in names))
        for row, scores in result["scores"].items():
            cells = " ".join(f"{'-' if v is None else f'{v:.3f}':>9s}" for v in scores["iou_per_class"])
            print(f"  {row:28s} {scores['miou']:6.3f} {cells}")
        for layout, demo in (result["demo_layouts"] or {}).items():
            cells = " ".join(f"{'-' if v is None else f'{v:.3f}':>9s}" for v in demo["iou_per_class"].values())
            print(f"  {'demo ' + layout:28s} {demo['miou']:6.3f} {cells}")
            for class_name, feature in demo["features"].items():
                print(
                    f"  {'':28s} {class_name}: {feature['drawn']} of {feature['of']} drawn, mean coverage "
                    f"{feature['mean_coverage']:.3f} (components of {feature['sizes']} px)"
                )
    if args.json:
        write_json_atomic(args.json, results)
    return results


if __name__ == "__main__":
    main()
