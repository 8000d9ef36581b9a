"""Detection figures: detector AUC / accuracy / TPR at 1 % FPR / F1, clean and perturbed; the cross-generator
matrix; watermark bit accuracy under the same perturbations, its false-positive rate on real tiles and its PSNR.

    # everything, on given sets (NAME=DIR names a synthetic set; a bare DIR is named after the folder)
    python benchmarks/detection.py --real ../shared/data/landcoverai_pairs/images \\
        --fake default-dpm=gen/dpm --fake default-ddim=gen/ddim --fake pix2pix=gen/p2p
    # synthetic sets made here with the shipped model (cached in --generate-dir; unwatermarked)
    python benchmarks/detection.py --real ../shared/data/landcoverai_pairs/images --generate \\
        --layouts ../shared/data/landcoverai_pairs --generate-spec default:dpm++:20 --generate-spec default:ddim:50
    # the watermark figures only (no generator needed)
    python benchmarks/detection.py --skip-detector --watermark-real ../shared/data/landcoverai_pairs/images \\
        --watermark-real ../shared/data/rsscn7 --watermark-n 2000

Protocol. Each set is split once (seeded) into train and test halves; a detector trains on the train halves of the
real set and of all synthetic sets pooled (its operating point is set at 1 % FPR on a held-back fifth of the real
train half), and is scored on the test halves, clean and under every perturbation in
``terrasynth.detect.perturb.PERTURBATIONS``. The cross-generator matrix trains one detector per synthetic set and
reports its AUC on every set's test half. Synthetic images are first re-encoded as JPEG (``--fake-jpeg``, default
quality 95, as LandCover.ai's tiles are stored) so that no detector can separate the sets by file format alone; the
perturbations come on top of that. Synthetic sets used for detection must not carry the watermark (the
``--generate`` sets are made with ``watermark=False``), or the detector could learn the mark.

Watermark: ``--watermark-n`` real tiles; each tile gets a random payload; bit accuracy is against the 64-bit word;
"recovered" is the share whose payload passes the keyed check and equals the embedded one; the false-positive rate
is the share of the *unmarked* tiles (clean and after JPEG 75) that decode to any valid payload, with its exact
one-sided 95 % upper bound; PSNR is of the marked vs the clean tile; time is the median CPU time of one embedding.
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

from terrasynth.detect.detector import DetectorConfig, load_image_folders, split_for_calibration, train_detector
from terrasynth.detect.evaluate import robustness_table, roc_auc
from terrasynth.detect.perturb import PERTURBATIONS, match_jpeg, perturb
from terrasynth.generate.watermark import BASELINE_SCHEME, DEFAULT_SCHEME, encode_word, get_scheme, psnr

TARGETS = {
    "detector AUC clean": ("clean", "auc", 0.99),
    "detector AUC JPEG 75": ("jpeg75", "auc", 0.95),
    "detector AUC resize 0.5": ("resize0.5", "auc", 0.95),
    "detector F1 (Geo-DefakeHop > 0.95), worst perturbation": (None, "f1", 0.95),
}


# watermark ------------------------------------------------------------------------------------------------------


def upper_bound_95(failures: int, n: int) -> float:
    """Exact (Clopper-Pearson) one-sided 95 % upper bound of a rate with ``failures`` out of ``n``."""
    from scipy.stats import beta

    return 1.0 if failures >= n else float(beta.ppf(0.95, failures + 1, n - failures))


def watermark_figures(images: list[np.ndarray], scheme_name: str, robust_n: int, seed: int = 0) -> dict:
    scheme = get_scheme(scheme_name)
    rng = np.random.default_rng(seed)
    rows = {name: {"bit_accuracy": [], "recovered": [], "unreadable": []} for name in PERTURBATIONS}
    psnrs, times = [], []
    chosen = sorted(rng.choice(len(images), min(robust_n, len(images)), replace=False))
    sizes = {}
    for index in chosen:
        image = images[index]
        size = f"{image.shape[1]}x{image.shape[0]}"
        sizes[size] = sizes.get(size, 0) + 1
        payload = int(rng.integers(0, 1 << 40))
        word = encode_word(payload)
        start = time.process_time()  # CPU time: wall time on a shared machine measures the neighbours
        marked = scheme.embed(image, word)
        times.append(time.process_time() - start)
        psnrs.append(psnr(image, marked))
        for name in PERTURBATIONS:
            try:
                reading = scheme.read(perturb(marked, name, seed + index))
            except ValueError:  # the baseline cannot read images below 256 px: count it as chance, not recovered
                rows[name]["bit_accuracy"].append(0.5)
                rows[name]["recovered"].append(False)
                rows[name]["unreadable"].append(True)
                continue
            rows[name]["bit_accuracy"].append(reading.bit_accuracy(word))
            rows[name]["recovered"].append(reading.payload == payload)
            rows[name]["unreadable"].append(False)
    false_positives = {}
    for name in ("clean", "jpeg75"):
        hits = sum(_reads_valid(scheme, perturb(x, name, seed + i)) for i, x in enumerate(images))
        false_positives[name] = {
            "hits": int(hits),
            "n": len(images),
            "rate": hits / len(images),
            "upper95": upper_bound_95(int(hits), len(images)),
        }
    return {
        "scheme": scheme_name,
        "n_robust": min(robust_n, len(images)),
        "psnr_mean": float(np.mean(psnrs)),
        "psnr_min": float(np.min(psnrs)),
        "psnr_p5": float(np.percentile(psnrs, 5)),
        "psnr_share_at_least_40db": float(np.mean(np.array(psnrs) >= 40.0)),
        "embed_ms_median": 1000 * float(np.median(times)),
        "sizes": sizes,
        "perturbations": {k: {m: float(np.mean(v)) for m, v in row.items()} for k, row in rows.items()},
        "false_positives": false_positives,
    }


def _reads_valid(scheme, image: np.ndarray) -> bool:
    try:
        return scheme.read(image).valid
    except ValueError:  # too small for the scheme: no payload read
        return False


def print_watermark(result: dict) -> None:
    sizes = ", ".join(f"{n} at {size}" for size, n in sorted(result["sizes"].items()))
    print(
        f"\nwatermark {result['scheme']}: {result['n_robust']} marked tiles ({sizes}); "
        f"PSNR mean {result['psnr_mean']:.2f} dB (5th percentile {result['psnr_p5']:.2f}, "
        f"min {result['psnr_min']:.2f}, "
        f"{result['psnr_share_at_least_40db']:.1%} of tiles >= 40 dB); "
        f"embedding {result['embed_ms_median']:.1f} ms CPU median"
    )
    print(f"  {'perturbation':<12}{'bit acc':>9}{'recovered':>11}{'unreadable':>12}")
    for name, row in result["perturbations"].items():
        print(f"  {name:<12}{row['bit_accuracy']:9.4f}{row['recovered']:11.3f}{row['unreadable']:12.3f}")
    for name, fp in result["false_positives"].items():
        print(
            f"  false positives on unmarked real tiles ({name}): {fp['hits']}/{fp['n']} = {fp['rate']:.4%} "
            f"(95 % upper bound {fp['upper95']:.4%})"
        )


# detector -------------------------------------------------------------------------------------------------------


def halves(images: list, seed: int) -> tuple[list, list]:
    return split_for_calibration(images, 0.5, seed)


def generate_sets(args) -> dict[str, Path]:
    """Unwatermarked synthetic sets from ``--generate-spec MODEL:SCHEDULER:STEPS``, one image per layout of
    ``--layouts`` (split ``--layouts-split``), cached in ``--generate-dir``."""
    from terrasynth.data.paired_tiles import PairedTiles
    from terrasynth.generate.api import load_pipeline
    from terrasynth.generate.batch import generate_for_layouts

    sets = {}
    for spec in args.generate_spec:
        parts = spec.rsplit(":", 2) if spec.count(":") >= 2 else (spec.split(":") + ["dpm++", "20"])[:3]
        model, scheduler, steps = parts
        bundle = load_pipeline(model, scheduler)
        data = PairedTiles(args.layouts, args.layouts_split, class_table=bundle[0].model.config.layout_classes)
        out = Path(args.generate_dir) / f"{Path(model).name}-{scheduler}-{steps}-nowm"
        indices = None
        if args.generate_limit and args.generate_limit < len(data):
            indices = sorted(
                int(i) for i in np.random.default_rng(args.seed).choice(len(data), args.generate_limit, replace=False)
            )
        generate_for_layouts(
            bundle,
            data,
            out,
            steps=int(steps),
            scheduler=scheduler,
            watermark=False,
            progress=not args.quiet,
            indices=indices,
        )
        sets[f"{Path(model).name}-{scheduler}-{steps}"] = out
    return sets


def detector_figures(args, real: list[np.ndarray], fakes: dict[str, list[np.ndarray]]) -> dict:
    real_train, real_test = halves(real, args.seed)
    split = {name: halves(images, args.seed + 1 + i) for i, (name, images) in enumerate(fakes.items())}
    results = {}
    for method in args.methods:
        config = DetectorConfig(
            method=method,
            input_size=args.input_size,
            epochs=args.epochs,
            seed=args.seed,
            pretrained=not args.no_pretrained,
            trained_on={
                "real": args.real,
                "fake": {name: str(folder) for name, folder in args.fake_dirs.items()},
                "fake_jpeg": args.fake_jpeg,
                "split": f"train halves (seed {args.seed}) of benchmarks/detection.py",
            },
        )
        pooled_train = [x for train, _ in split.values() for x in train]
        pooled_test = [x for _, test in split.values() for x in test]
        start = time.perf_counter()
        detector = train_detector(config, real_train, pooled_train)
        trained_s = time.perf_counter() - start
        if args.save_detectors:
            print(f"saved the {method} detector: {detector.save(Path(args.save_detectors) / method)}")
        table = robustness_table(detector, real_test, pooled_test, list(PERTURBATIONS), args.seed)
        matrix = {}
        if len(split) > 1:
            for train_name, (train, _) in split.items():
                one = train_detector(config, real_train, train)
                real_scores = one.score(real_test)
                matrix[train_name] = {}
                for test_name, (_, test) in split.items():
                    scores = np.r_[real_scores, one.score(test)]
                    matrix[train_name][test_name] = roc_auc(np.r_[np.zeros(len(real_test)), np.ones(len(test))], scores)
        else:
            name = next(iter(split))
            matrix[name] = {name: table["clean"]["auc"]}
        results[method] = {
            "operating_point": detector.config.operating_point,
            "threshold": detector.threshold,
            "train_seconds": trained_s,
            "n_train": {"real": len(real_train), "fake": len(pooled_train)},
            "n_test": {"real": len(real_test), "fake": len(pooled_test)},
            "table": table,
            "cross_generator_auc": matrix,
        }
    return results


def print_detector(method: str, result: dict) -> None:
    print(
        f"\ndetector {method}: trained on {result['n_train']['real']} real + {result['n_train']['fake']} synthetic "
        f"in {result['train_seconds']:.0f} s; tested on {result['n_test']['real']} real + "
        f"{result['n_test']['fake']} synthetic; {result['operating_point']}"
    )
    print(f"  {'perturbation':<12}{'AUC':>8}{'acc':>8}{'TPR@1%':>8}{'F1':>8}")
    for name, row in result["table"].items():
        print(f"  {name:<12}{row['auc']:8.4f}{row['accuracy']:8.4f}{row['tpr@1%fpr']:8.4f}{row['f1']:8.4f}")
    names = list(result["cross_generator_auc"])
    print("  cross-generator AUC (rows: trained on, columns: tested on)")
    print("  " + " " * 20 + "".join(f"{n[:14]:>15}" for n in names))
    for train_name, row in result["cross_generator_auc"].items():
        print(f"  {train_name[:20]:<20}" + "".join(f"{row[n]:15.4f}" for n in names))
    for label, (perturbation, metric, target) in TARGETS.items():
        rows = [result["table"][perturbation]] if perturbation else list(result["table"].values())
        value = min(r[metric] for r in rows)
        print(f"  target {label} >= {target}: {value:.4f} {'met' if value >= target else 'MISSED'}")


# main -----------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="append", default=[], help="real tiles (repeatable; recursive)")
    parser.add_argument("--fake", action="append", default=[], help="NAME=DIR or DIR of synthetic tiles (repeatable)")
    parser.add_argument("--generate", action="store_true", help="make synthetic sets with --generate-spec")
    parser.add_argument("--generate-spec", action="append", default=[], help="MODEL:SCHEDULER:STEPS (repeatable)")
    parser.add_argument("--layouts", default="../shared/data/landcoverai_pairs", help="paired tiles for --generate")
    parser.add_argument("--layouts-split", default="all", help="split of --layouts to generate from (default all)")
    parser.add_argument("--generate-dir", default="runs/detection-sets", help="cache of generated sets")
    parser.add_argument("--generate-limit", type=int, help="layouts per --generate-spec (a seeded sample)")
    parser.add_argument("--methods", nargs="+", default=["spectral", "cnn"], choices=["spectral", "cnn"])
    parser.add_argument("--max-images", type=int, default=1000, help="per set (seeded sample)")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-pretrained", action="store_true", help="CNN from scratch (tests only)")
    parser.add_argument(
        "--fake-jpeg",
        type=int,
        default=95,
        metavar="Q",
        help="re-encode synthetic images as JPEG at quality Q, as the real tiles are stored (0: keep them lossless)",
    )
    parser.add_argument("--save-detectors", help="save the pooled detectors to DIR/<method> (to ship them)")
    parser.add_argument("--watermark-real", action="append", default=[], help="real tiles for watermark figures")
    parser.add_argument("--watermark-n", type=int, default=2000, help="unmarked real tiles for the FPR")
    parser.add_argument("--watermark-robust-n", type=int, default=300, help="tiles marked for bit accuracy")
    parser.add_argument("--no-baseline", action="store_true", help="skip the invisible-watermark baseline")
    parser.add_argument("--skip-detector", action="store_true")
    parser.add_argument("--skip-watermark", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.generate and not args.generate_spec:
        args.generate_spec = ["default:dpm++:20", "default:ddim:50"]
    if not args.skip_detector and (not args.real or not (args.fake or args.generate)):
        parser.error("the detector figures need --real and --fake or --generate (or pass --skip-detector)")
    if not args.skip_watermark and not (args.watermark_real or args.real):
        parser.error("the watermark figures need --watermark-real or --real (or pass --skip-watermark)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    print(f"command: python benchmarks/detection.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    figures: dict = {}
    if not args.skip_watermark:
        folders = args.watermark_real or args.real
        images = load_image_folders(folders, args.watermark_n, args.seed)
        schemes = [DEFAULT_SCHEME]
        try:
            import imwatermark  # noqa: F401

            schemes += [] if args.no_baseline else [BASELINE_SCHEME]
        except ImportError:
            print(f"({BASELINE_SCHEME} baseline skipped: pip install invisible-watermark)")
        figures["watermark"] = {}
        for name in schemes:
            usable = images if name == DEFAULT_SCHEME else [x for x in images if min(x.shape[:2]) >= 256]
            if not usable:  # the baseline cannot mark or read images below 256 px
                print(f"({name} skipped: no tile of at least 256x256)")
                continue
            figures["watermark"][name] = watermark_figures(usable, name, args.watermark_robust_n, args.seed)
            print_watermark(figures["watermark"][name])
    if not args.skip_detector:
        fake_dirs = {}
        for item in args.fake:
            name, _, folder = item.partition("=") if "=" in item else (Path(item).name, "", item)
            fake_dirs[name] = Path(folder)
        if args.generate:
            fake_dirs.update(generate_sets(args))
        args.fake_dirs = fake_dirs
        real = load_image_folders(args.real, args.max_images, args.seed)
        fakes = {
            name: match_jpeg(load_image_folders([folder], args.max_images, args.seed), args.fake_jpeg)
            for name, folder in fake_dirs.items()
        }
        print(
            f"\nsets: real {len(real)} ({', '.join(args.real)}); "
            + "; ".join(f"{n} {len(v)} ({fake_dirs[n]})" for n, v in fakes.items())
            + (f"; synthetic images re-encoded as JPEG q{args.fake_jpeg}" if args.fake_jpeg else "")
        )
        figures["detector"] = detector_figures(args, real, fakes)
        for method, result in figures["detector"].items():
            print_detector(method, result)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
