"""Realism figures: the full table (real-vs-real floor, the default model, baselines, down-up references) on every
metric, FD/KID against sampling steps per scheduler, and evaluation throughput.

    python benchmarks/realism.py --data ../shared/data/landcoverai_pairs --split test --size 256

The floor (``--floor val``, default): the reference set is the real tiles of the ``val`` split and the floor row
is the real tiles of the evaluated split, so the two real sets are disjoint; every candidate row (the model,
each baseline, the down-up references) is made from the evaluated split's layouts and has the same N as the floor
row. A reference row of real training tiles, one per layout matched by class shares, shows what the training
data itself reaches (a model that drew its distribution faithfully). ``--floor half`` instead halves the
evaluated split at random (seeded): half A is the reference, half B the floor and the layouts the candidates are
made from. Every row also gets its magenta-speck share (``evaluate/defects.py``) and a fresh-detector AUC
(C2ST, ``evaluate/two_sample.py``; ``--c2st-repeats``), and the demo's hand-drawn layouts are scored per class,
with their rivers and buildings counted as drawn or not (``--demo-per-layout``). Generated images are cached under
``--work`` (one file per layout, ``<id>-000.png``), so a rerun only computes metrics. Prints every figure and the
command that made it; writes ``metrics.json``, ``report.html`` and the plots to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from terrasynth.data.images import read_image
from terrasynth.data.paired_tiles import PairedTiles
from terrasynth.data.transforms import Resize
from terrasynth.evaluate.baselines import (
    ColourFill,
    DownUpReference,
    NearestLayoutRetrieval,
    Pix2PixBaseline,
    matched_training_tiles,
)
from terrasynth.evaluate.defects import (
    MAGENTA_HUE,
    MAGENTA_MIN_SATURATION,
    MAGENTA_MIN_VALUE,
    component_coverage,
    magenta_image_share,
    magenta_ratio,
    magenta_share,
)
from terrasynth.evaluate.evaluation import (
    K_PRECISION_RECALL,
    MIN_PER_SET,
    check_set_size,
    distribution_row,
    extract_all,
    layout_row,
    paired_row,
)
from terrasynth.evaluate.features import build_extractor, resize_batch
from terrasynth.evaluate.layout_fidelity import SHIPPED_SEGMENTER, load_segmenter
from terrasynth.evaluate.memorisation import memorisation_scores
from terrasynth.evaluate.metrics import frechet_distance, kid, precision_recall
from terrasynth.evaluate.report import format_table, ratios_to_floor, score, write_report
from terrasynth.evaluate.two_sample import c2st_auc
from terrasynth.generate.schedulers import DEFAULT_SCHEDULER
from terrasynth.models.registry import WEIGHTS_DIR

FLOOR_ROW = "real vs real (floor)"
# Real training tiles, one per evaluated layout, matched by class shares: the reach of the training data.
MATCHED_ROW = "reference: training tiles matched by class shares"


class Subset:
    """The samples of a paired dataset at ``indices``, with the attributes generate_for_layouts reads."""

    def __init__(self, dataset: PairedTiles, indices):
        self.dataset, self.indices = dataset, list(indices)
        self.ids = [dataset.ids[i] for i in self.indices]
        self.class_table, self.root = dataset.class_table, dataset.root

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]


class DemoLayouts:
    """The demo's hand-drawn layouts (``terrasynth demo``) as a dataset generate_for_layouts reads: each sample's
    layout and the caption the demo gives it."""

    def __init__(self):
        from terrasynth.data.captions import caption_from_layout
        from terrasynth.data.classes import ClassTable
        from terrasynth.data.layouts import load_layout
        from terrasynth.generate.demo import DEMO_ASSETS, DEMO_LAYOUTS

        self.class_table = ClassTable.from_json(DEMO_ASSETS / "classes.json")
        self.root, self.ids = DEMO_ASSETS, [Path(name).stem for name in DEMO_LAYOUTS]
        self.layouts = [torch.as_tensor(load_layout(DEMO_ASSETS / n, self.class_table).classes) for n in DEMO_LAYOUTS]
        self.captions = [caption_from_layout(layout, self.class_table) for layout in self.layouts]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {"layout": self.layouts[index], "caption": self.captions[index]}


def demo_layout_scores(bundle, segmenter, work: Path, sampling_args: tuple, per_layout: int, seed: int, progress):
    """Per-class IoU of the segmenter on images generated for each demo layout, and whether each layout's water
    bodies (the river of ``river_village``) and buildings are drawn: per connected component, the share of its
    pixels the segmenter labels with its class (drawn: at least half)."""
    from terrasynth.generate.batch import generate_for_layouts
    from terrasynth.generate.sampling import Sampling
    from terrasynth.train.supervised import segmentation_scores

    demo = DemoLayouts()
    scheduler, steps, guidance = sampling_args
    out = work / f"demo-{bundle[2][:12]}-{scheduler}-{steps}steps-g{guidance:g}-seed{seed}"
    paths = generate_for_layouts(bundle, demo, out, Sampling(steps, guidance, scheduler), per_layout, seed, progress)
    names = segmenter.config.class_names
    results = {}
    for index, name in enumerate(demo.ids):
        layout = demo.layouts[index]
        images = torch.stack([read_image(p) for p in paths[index * per_layout : (index + 1) * per_layout]])
        predicted = segmenter.predict(images)
        scores = segmentation_scores(predicted, layout.expand(len(images), -1, -1), len(names))
        features = {}
        for class_name in ("water", "building"):
            if class_name not in names:
                continue
            class_index = names.index(class_name)
            coverages = [component_coverage(p, layout, class_index) for p in predicted]
            if not coverages or len(coverages[0]) == 0:
                continue
            features[class_name] = {
                "components": len(coverages[0]),
                "sizes": list(coverages[0].sizes),
                "drawn": sum(c.drawn() for c in coverages),
                "of": sum(len(c) for c in coverages),
                "mean_coverage": float(np.mean([v for c in coverages for v in c.covered])),
            }
        results[name] = {
            "iou_per_class": dict(zip(names, scores["iou_per_class"])),
            "miou": scores["miou"],
            "images": per_layout,
            "features": features,
        }
    return results


def load_split(root, split, size, limit=None, seed=0) -> PairedTiles | Subset:
    dataset = PairedTiles(root, split, transforms=Resize(size))
    indices = range(len(dataset))
    if limit is not None and limit < len(dataset):
        indices = sorted(np.random.default_rng(seed).permutation(len(dataset))[:limit])
    return Subset(dataset, indices)


def stack(dataset, key):
    return torch.stack([dataset[i][key] for i in range(len(dataset))])


def effnet_scores(reference_images: torch.Tensor, size: int, seed: int = 0):
    """A function scoring a set of images on effnet features against ``reference_images``: a dict of FD, KID, and
    precision and recall (k = 3, as the realism table)."""
    extractor = build_extractor("effnet", effnet_size=size)
    reference = extractor.features(reference_images)

    def score(images: torch.Tensor) -> dict:
        features = extractor.features(images)
        coverage = precision_recall(reference, features, K_PRECISION_RECALL)
        return {
            "fd_effnet": float(frechet_distance(reference, features)),
            "kid_effnet": float(kid(reference, features, seed=seed)["mean"]),
            "precision_effnet": coverage["precision"],
            "recall_effnet": coverage["recall"],
        }

    return score


def parse_guidance(text: str) -> list[tuple[float, tuple[float, float] | None]]:
    """``"2,5@0.5-1"`` → ``[(2.0, None), (5.0, (0.5, 1.0))]``: scales, each optionally with its guidance interval
    (fractions of the noise schedule, 1 = pure noise)."""
    from terrasynth.generate.pipeline import check_guidance_interval

    specs = []
    for item in text.split(","):
        scale, _, interval = item.partition("@")
        low, _, high = interval.partition("-")
        specs.append((float(scale), check_guidance_interval((low, high)) if interval else None))
    return specs


def guidance_label(scale: float, interval: tuple[float, float] | None, rescale: float = 0.0) -> str:
    label = f"{scale:g}" if interval is None else f"{scale:g} at t/T {interval[0]:g}–{interval[1]:g}"
    return label + (f", rescale {rescale:g}" if rescale else "")


def generate_model_set(
    bundle,
    dataset,
    work: Path,
    scheduler: str,
    steps: int,
    size: int,
    guidance: float,
    seed: int,
    progress: bool,
    interval: tuple[float, float] | None = None,
    rescale: float = 0.0,
) -> torch.Tensor:
    from terrasynth.generate.batch import generate_for_layouts
    from terrasynth.generate.sampling import Sampling

    # The cache key names everything that changes an image, so a new model or guidance never reuses old files.
    model_sha = bundle[2][:12]
    guidance_key = f"g{guidance:g}" + ("" if interval is None else f"i{interval[0]:g}-{interval[1]:g}")
    guidance_key += f"r{rescale:g}" if rescale else ""
    out = work / f"model-{model_sha}-{scheduler}-{steps}steps-{guidance_key}-seed{seed}-{size}px"
    sampling = Sampling(steps, guidance, scheduler, guidance_interval=interval, guidance_rescale=rescale)
    paths = generate_for_layouts(bundle, dataset, out, sampling, seed=seed, progress=progress)
    return resize_batch([read_image(p) for p in paths], size)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--split", default="test", help="layouts and real tiles evaluated")
    parser.add_argument("--floor", default="val", help="a disjoint split for the reference set, or 'half'")
    parser.add_argument("--train-split", default="train", help="what baselines fit and memorisation compares to")
    parser.add_argument("--model", default="default")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, help="at most this many tiles per split (seeded sample)")
    parser.add_argument("--train-limit", type=int, help="at most this many training tiles")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    parser.add_argument("--scheduler", default=DEFAULT_SCHEDULER)
    parser.add_argument(
        "--guidance",
        help="classifier-free guidance; comma-separated for one model row each, SCALE or SCALE@LOW-HIGH with a "
        "guidance interval (the sampling-step sweep uses the first); default: the model's own",
    )
    parser.add_argument(
        "--guidance-rescale", type=float, default=0.0, help="guidance rescale φ (Lin et al. 2024) for every model row"
    )
    parser.add_argument("--features", default="effnet", help="comma-separated extractors (effnet, domain, inception)")
    parser.add_argument("--domain-encoder", help="default: the shipped one")
    parser.add_argument("--inception-weights")
    parser.add_argument("--segmenter", help=f"default: {SHIPPED_SEGMENTER} when present")
    parser.add_argument("--pix2pix", help=f"pix2pix model folder (default: {WEIGHTS_DIR / 'pix2pix'} when present)")
    parser.add_argument("--down-up", default="64,32", help="sizes of the real down-up reference rows")
    parser.add_argument("--sweep-steps", default="5,10,20,50,100")
    parser.add_argument("--sweep-schedulers", default="dpm++,dpm++sde,ddim,euler")
    parser.add_argument("--sweep-limit", type=int, default=48, help="layouts per sweep point (0: no sweep)")
    parser.add_argument("--throughput-n", type=int, default=1000)
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--c2st-repeats", type=int, default=5, help="random halvings of the fresh-detector test (0: no C2ST)"
    )
    parser.add_argument(
        "--demo-per-layout",
        type=int,
        default=3,
        help="images per demo layout for the hand-drawn-layout figures (0: none; needs a segmenter)",
    )
    parser.add_argument(
        "--generation-seed",
        type=int,
        help="seed of the model rows' images and the sweep's (default: --seed); tiles, baselines and KID subsets "
        "keep --seed, so runs with several generation seeds show how far the model's figures move with it alone",
    )
    parser.add_argument("--work", default="realism-work", help="cache of generated images")
    parser.add_argument("--out", default="realism-report")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv=None, bundle=None) -> dict:
    args = parse_args(argv)
    command = "python benchmarks/realism.py " + " ".join(sys.argv[1:] if argv is None else argv)
    work, size, progress = Path(args.work), args.size, not args.quiet
    from terrasynth.generate.pipeline import check_guidance_rescale

    guidances = parse_guidance(args.guidance) if args.guidance else None
    check_guidance_rescale(args.guidance_rescale)
    notes = [f"all images resized to {size}×{size} (bilinear, antialiased) before scoring"]

    generation_seed = args.seed if args.generation_seed is None else args.generation_seed
    # 1. data: the evaluated split, the reference set, the training tiles
    evaluated = load_split(args.data, args.split, size, args.limit, args.seed)
    if args.floor == "half":
        order = np.random.default_rng(args.seed).permutation(len(evaluated))
        half = len(evaluated) // 2
        reference_set = Subset(evaluated.dataset, [evaluated.indices[i] for i in sorted(order[:half])])
        evaluated = Subset(evaluated.dataset, [evaluated.indices[i] for i in sorted(order[half : 2 * half])])
        notes.append(
            f"floor: split {args.split!r} halved at random (seed {args.seed}): reference A ({half}) vs "
            f"real B ({half}); candidates are made from B's layouts"
        )
    else:
        reference_set = load_split(args.data, args.floor, size, args.limit, args.seed)
        n = min(len(reference_set), len(evaluated))
        evaluated = Subset(evaluated.dataset, evaluated.indices[:n])
        notes.append(
            f"floor: real tiles of split {args.split!r} ({n}) vs the reference, split {args.floor!r} "
            f"({len(reference_set)}): disjoint real sets; candidates are made from the same {n} layouts"
        )
    check_set_size(len(reference_set), "reference set")
    check_set_size(len(evaluated), "evaluated set")
    train = load_split(args.data, args.train_split, size, args.train_limit, args.seed)
    real, layouts = stack(evaluated, "image"), stack(evaluated, "layout")
    reference_images = stack(reference_set, "image")
    train_images, train_layouts = stack(train, "image"), stack(train, "layout")
    num_classes = len(evaluated.class_table)

    # 2. candidates: the model, the baselines, the down-up references
    if bundle is None:
        from terrasynth.generate.api import load_pipeline

        bundle = load_pipeline(args.model, args.scheduler)
    from terrasynth.generate.pipeline import resolve_guidance_scale, resolve_steps

    args.steps = resolve_steps(bundle[0], args.steps)
    if guidances is None:
        guidances = [(resolve_guidance_scale(bundle[0], None), None)]
    candidates = {FLOOR_ROW: real}
    for guidance, interval in guidances:
        start = time.perf_counter()
        label = guidance_label(guidance, interval, args.guidance_rescale)
        candidates[f"model ({args.scheduler}, {args.steps} steps, guidance {label})"] = generate_model_set(
            bundle,
            evaluated,
            work,
            args.scheduler,
            args.steps,
            size,
            guidance,
            generation_seed,
            progress,
            interval,
            args.guidance_rescale,
        )
        notes.append(
            f"model {bundle[1]} (sha256 {bundle[2][:12]}) at guidance {label}, seed {generation_seed}, watermarked "
            f"as shipped: generation (or cache read) took {time.perf_counter() - start:.1f} s"
        )
    colour = ColourFill(num_classes).fit(train_images, train_layouts)
    candidates["baseline: colour fill + noise"] = torch.stack(
        [colour.generate(lay, args.seed + i) for i, lay in enumerate(layouts)]
    )
    retrieval = NearestLayoutRetrieval(num_classes).fit(train_images, train_layouts)
    candidates["baseline: nearest-layout retrieval"] = torch.stack([retrieval.generate(lay) for lay in layouts])
    pix2pix_folder = Path(args.pix2pix) if args.pix2pix else WEIGHTS_DIR / "pix2pix"
    if (pix2pix_folder / "generator.safetensors").is_file():
        pix2pix = Pix2PixBaseline(pix2pix_folder)
        candidates["baseline: pix2pix"] = torch.stack([pix2pix.generate(lay) for lay in layouts])
    else:
        notes.append(f"pix2pix row missing: no trained generator at {pix2pix_folder} (terrasynth train-pix2pix)")
    if len(train_images) >= len(layouts):
        matched = matched_training_tiles(train_layouts, layouts, num_classes)
        candidates[MATCHED_ROW] = resize_batch([train_images[i] for i in matched], size)
    for low in [int(v) for v in args.down_up.split(",") if v]:
        if low < size:
            reference = DownUpReference(low)
            candidates[f"reference: real {low}px down-up"] = torch.stack([reference.apply(im) for im in real])

    # 3. features and the table
    extractors = {
        name: build_extractor(name, args.domain_encoder, args.inception_weights, size, size)
        for name in args.features.split(",")
    }
    reference = extract_all(extractors, reference_images)
    segmenter = None
    segmenter_folder = Path(args.segmenter) if args.segmenter else SHIPPED_SEGMENTER
    if (segmenter_folder / "model.safetensors").is_file():
        segmenter = load_segmenter(segmenter_folder)
    else:
        notes.append(f"layout fidelity missing: no segmenter at {segmenter_folder} (terrasynth train-segmenter)")
    effnet = extractors["effnet"] if "effnet" in extractors else build_extractor("effnet", effnet_size=size)
    train_features = effnet.features(train_images)
    real_features = effnet.features(real)
    reference_features = reference["effnet"] if "effnet" in reference else effnet.features(reference_images)
    real_pixels = real.shape[0] * real.shape[-2] * real.shape[-1]
    real_magenta = magenta_share(real)
    magenta = {}
    rows = {}
    for name, images in candidates.items():
        features = extract_all(extractors, images)
        row = distribution_row(reference, features, extractors, images, args.kid_subsets, args.seed)
        row.update(paired_row(real, images, effnet.net))
        if segmenter is not None:
            row.update(layout_row(segmenter, list(images), list(layouts)))
        fake_features = features["effnet"] if "effnet" in features else effnet.features(images)
        memo = memorisation_scores(train_features, fake_features, real_features)
        row["memorised_fraction"] = score(
            memo["flagged_fraction"],
            extractor="effnet",
            quantile=memo["quantile"],
            n_fake=memo["n_fake"],
            n_train=memo["n_train"],
            reference=memo["reference"],
        )
        share = magenta_share(images)
        ratio, lower_bound = magenta_ratio(share, real_magenta, real_pixels)
        magenta[name] = {"ratio": ratio, "lower_bound": lower_bound, "images_with_speck": magenta_image_share(images)}
        row["magenta_share"] = score(
            share, hue=MAGENTA_HUE, min_saturation=MAGENTA_MIN_SATURATION, min_value=MAGENTA_MIN_VALUE, **magenta[name]
        )
        if args.c2st_repeats > 0:
            # the floor row: the evaluated real tiles against the disjoint reference split (the FD floor's pairing);
            # every other row: its images against the real tiles of the same layouts, each pair in one half
            other = reference_features if name == FLOOR_ROW else real_features
            c2st = c2st_auc(
                np.asarray(other),
                np.asarray(fake_features),
                paired=name != FLOOR_ROW and len(other) == len(fake_features),
                repeats=args.c2st_repeats,
                seed=args.seed,
            )
            row["C2ST_AUC"] = score(
                c2st["auc"],
                c2st["auc_std"],
                extractor="effnet",
                probe="logistic regression",
                halves=2 * c2st["repeats"],
                n_a=c2st["n_a"],
                n_b=c2st["n_b"],
                against=args.floor if name == FLOOR_ROW else args.split,
            )
        rows[name] = row
    notes.append(
        "memorised_fraction: share of a row's images nearer (effnet features) to a training tile than the "
        "1st percentile of the evaluated real tiles' nearest-training-tile distances"
    )

    notes.append(
        f"magenta_share: share of pixels with HSV hue {MAGENTA_HUE[0]:g}–{MAGENTA_HUE[1]:g}°, saturation ≥ "
        f"{MAGENTA_MIN_SATURATION:g}, value ≥ {MAGENTA_MIN_VALUE:g} (bounds chosen on real train tiles; "
        "evaluate/defects.py); its ratio to the real tiles' takes one pixel of the real set when they hold none"
    )
    if args.c2st_repeats > 0:
        halves = Subset(evaluated.dataset, evaluated.indices)
        order = np.random.default_rng(args.seed).permutation(len(halves))
        half = len(order) // 2
        chance = c2st_auc(
            np.asarray(real_features)[order[:half]],
            np.asarray(real_features)[order[half : 2 * half]],
            repeats=args.c2st_repeats,
            seed=args.seed,
        )
        notes.append(
            f"C2ST_AUC: a fresh logistic regression on effnet features, trained on half of each set and scored "
            f"by ROC AUC on the other half (both ways, {args.c2st_repeats} random halvings; 0.5: cannot tell them "
            f"apart); each row against the real {args.split} tiles of the same layouts (pairs kept in one half), the "
            f"floor row the real {args.split} tiles against the real {args.floor} tiles; two random halves of the "
            f"real {args.split} tiles against each other (chance): {chance['auc']:.3f} ± {chance['auc_std']:.3f}"
        )

    demo = None
    if segmenter is not None and args.demo_per_layout > 0:
        demo = demo_layout_scores(
            bundle,
            segmenter,
            work,
            (args.scheduler, args.steps, guidances[0][0]),
            args.demo_per_layout,
            generation_seed,
            progress,
        )

    # 4. FD and KID against sampling steps, per scheduler
    sweep: dict = {}
    sweep_plot = None
    if args.sweep_limit > 0:
        sweep_set = Subset(evaluated.dataset, evaluated.indices[: max(args.sweep_limit, MIN_PER_SET)])
        steps_list = [int(s) for s in args.sweep_steps.split(",")]
        sweep_scale, sweep_interval = guidances[0]
        reference_effnet = reference["effnet"] if "effnet" in reference else effnet.features(reference_images)
        for scheduler in args.sweep_schedulers.split(","):
            sweep[scheduler] = {}
            for steps in steps_list:
                images = generate_model_set(
                    bundle,
                    sweep_set,
                    work / "sweep",
                    scheduler,
                    steps,
                    size,
                    sweep_scale,
                    generation_seed,
                    progress,
                    sweep_interval,
                    args.guidance_rescale,
                )
                features = effnet.features(images)
                values = kid(reference_effnet, features, subsets=args.kid_subsets, seed=args.seed)
                sweep[scheduler][steps] = {
                    "FD_effnet": frechet_distance(reference_effnet, features),
                    "KID_effnet": values["mean"],
                    "KID_effnet_std": values["std"],
                    "n": len(images),
                }
        sweep_plot = plot_sweep(Path(args.out) / "plot-steps.png", sweep)

    # 5. evaluation throughput: features + every distribution metric for throughput_n images
    count = args.throughput_n
    throughput = {"images": 0, "seconds": 0.0, "images_per_s": float("nan"), "extractors": list(extractors)}
    if count > 0:
        images = real[torch.arange(count) % len(real)]
        start = time.perf_counter()
        features = extract_all(extractors, images)
        distribution_row(features, features, extractors, None, args.kid_subsets, args.seed)
        seconds = time.perf_counter() - start
        throughput = {
            "images": count,
            "seconds": seconds,
            "images_per_s": count / seconds,
            "extractors": list(extractors),
            "threads": torch.get_num_threads(),
        }

    ratios = ratios_to_floor(rows, FLOOR_ROW)
    results = {
        "command": command,
        "floor": FLOOR_ROW,
        "rows": rows,
        "ratios": ratios,
        "extractors": {n: e.descriptor for n, e in extractors.items()},
        "notes": notes,
        "sweep": sweep,
        "throughput": throughput,
        "demo_layouts": demo,
        "data": {
            "root": str(args.data),
            "split": args.split,
            "size": size,
            "n": len(evaluated),
            "n_reference": len(reference_set),
            "n_train": len(train),
        },
    }
    grids = {
        "layouts": [
            torch.from_numpy(evaluated.class_table.render(lay)).permute(2, 0, 1).float() / 255 for lay in layouts[:8]
        ]
    }
    grids.update({name: list(images[:8]) for name, images in candidates.items()})
    write_report(
        args.out,
        results,
        grids,
        {"FD/KID vs sampling steps": sweep_plot} if sweep_plot else None,
        title="Terrasynth realism benchmark",
    )

    print(f"command: {command}")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"data: {args.data} split {args.split}, N = {len(evaluated)} per row, reference N = {len(reference_set)}, "
        f"{size} px"
    )
    print(format_table(rows, ratios))
    if segmenter is not None:
        print("layout IoU per class (the segmenter on each row's images against the input layout)")
        for name, row in rows.items():
            per_class = row["mIoU"].get("iou_per_class", {})
            cells = "  ".join(f"{c} {'-' if v is None else f'{v:.3f}'}" for c, v in per_class.items())
            print(f"  {name:40s} {cells}")
    print("magenta specks (share of pixels; ratio to the real tiles; images with ≥ 4 magenta pixels)")
    for name, row in rows.items():
        entry = row["magenta_share"]
        bound = "≥ " if entry["lower_bound"] and entry["ratio"] > 0 else ""
        ratio = "" if name == FLOOR_ROW else f"÷ real {bound}{entry['ratio']:.3g}"
        share, images = entry["value"] * 1e6, entry["images_with_speck"]
        print(f"  {name:40s} {share:9.1f} per million  {ratio:16s}  images {images:.3f}")
    if demo:
        print(f"demo layouts ({args.demo_per_layout} images each): IoU per class, water and building components drawn")
        for name, entry in demo.items():
            cells = "  ".join(f"{c} {'-' if v is None else f'{v:.3f}'}" for c, v in entry["iou_per_class"].items())
            print(f"  {name:20s} mIoU {entry['miou']:.3f}  {cells}")
            for class_name, feature in entry["features"].items():
                print(
                    f"  {'':20s} {class_name}: {feature['drawn']} of {feature['of']} components drawn (≥ half their "
                    f"pixels segmented as {class_name}), mean coverage {feature['mean_coverage']:.3f}, sizes "
                    f"{feature['sizes']} px"
                )
    if sweep:
        print("FD_effnet / KID_effnet against sampling steps")
        for scheduler, points in sweep.items():
            cells = "  ".join(f"{s}: {p['FD_effnet']:.1f} / {p['KID_effnet']:.4f}" for s, p in points.items())
            print(f"  {scheduler:8s} {cells}")
    if count > 0:
        print(
            f"evaluation throughput: {throughput['images_per_s']:.1f} images/s ({count} images, "
            f"{'+'.join(extractors)} features + all distribution metrics)"
        )
    for note in notes:
        print(f"note: {note}")
    print(f"report: {Path(args.out) / 'report.html'}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"rows": rows, "sweep": sweep, "throughput": throughput, "demo_layouts": demo}, indent=2, default=str
            )
        )
    return results


def plot_sweep(path: Path, sweep: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from terrasynth.files import atomic_path

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for scheduler, points in sweep.items():
        steps = sorted(points)
        axes[0].plot(steps, [points[s]["FD_effnet"] for s in steps], marker="o", label=scheduler)
        axes[1].errorbar(
            steps,
            [points[s]["KID_effnet"] for s in steps],
            yerr=[points[s]["KID_effnet_std"] for s in steps],
            marker="o",
            label=scheduler,
            capsize=3,
        )
    for axis, name in zip(axes, ("FD_effnet", "KID_effnet")):
        axis.set_xscale("log")
        axis.set_xlabel("sampling steps")
        axis.set_ylabel(name)
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


if __name__ == "__main__":
    main()
