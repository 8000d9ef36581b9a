"""Detection figures that measure generalisation, not memory: leave one generator family out, leave one real source
out, each clean and after JPEG 75, resize ×0.5 and a random crop; localisation on composites.

    python benchmarks/detection_sets.py --out runs/detection-sets-v3          # the sets (once)
    python benchmarks/detection.py --sets runs/detection-sets-v3/manifest.csv --json runs/detection.json \\
        --save-detector runs/detector-probe

Protocol (the sets' ``side`` column keeps every tile and everything made from it on one side):
* **leave-one-generator-out**: for each synthetic family F, a detector is trained on side-``a`` real tiles and the
  side-``a`` images of every other family, calibrated (p ≤ 0.01, split conformal) on a held-back fifth of the
  side-``a`` real tiles, and tested on side-``b`` real tiles against side-``b`` images of F alone. One row per F:
  AUC, the share of F called *synthetic* at the operating point (TPR), and the false-positive rate on the real tiles.
* **leave-one-source-out**: for each real source S, the detector is trained and calibrated without any image of S
  (no real tile of S and nothing made from one); the row counts S's real tiles called *synthetic* (false positives),
  *uncertain* and *outside the calibrated domain*, and gives the AUC of S's real tiles against all side-``b`` fakes.
  A second row (``S+calibrated``) sets the same detector's p-values on S's side-``a`` calibration tiles, as
  ``terrasynth detect calibrate`` does with a user's genuine images.
* **both at once** (as outside the lab, where the region and the generator are new): for each source S and family
  F, trained and calibrated with no image of S and none of F; S's side-``b`` real tiles against F's side-``b``
  images.
* every row also after JPEG 75, resize ×0.5 and a random crop to half of each side, applied to both classes.
* **localisation**: IoU of the binary mask at 0.5 with the true synthetic region of side-``b`` composites, by
  detectors that never saw a composite (and, stricter, never saw the family whose pixels were spliced in).

Synthetic images are re-encoded as JPEG q95 before testing, as LandCover.ai's tiles are stored, so the file format
is no cue; in training half of them are (q 85–95) and half stay lossless, and every training image, real or
synthetic, also appears once after a random everyday edit (``terrasynth.detect.perturb.everyday_processing``).
Tile features are cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from terrasynth.detect.detector import DetectorConfig, build_detector, read_rgb
from terrasynth.detect.evaluate import roc_auc
from terrasynth.detect.features import COLOUR_WIDTH, FEATURE_WIDTH, FEATURES_VERSION
from terrasynth.detect.perturb import crop, everyday_processing, jpeg, random_downscale, resize

TEST_PERTURBATIONS = ("clean", "jpeg75", "resize0.5", "crop0.5")
COLOUR_COLUMNS = np.r_[FEATURE_WIDTH - COLOUR_WIDTH : FEATURE_WIDTH]
# every training image as it is, after a random everyday edit, and twice shrunk by a random 0.4–0.9 (the shrunk
# copies train the forensic and content probes only); calibration images as they are and after an everyday edit
TRAIN_VARIANTS = ("train-clean", "train-processed", "train-downscaled", "train-downscaled2")
CALIBRATION_VARIANTS = ("train-clean", "train-processed")
TARGETS = {"auc": 0.95, "fpr": 0.01, "auc_perturbed": 0.9, "fpr_perturbed": 0.02, "iou": 0.7}


def _seed(path: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}/{path}".encode()).digest()[:8], "big")


def load_variant(row: dict, variant: str) -> np.ndarray:
    """The image of a manifest row as the protocol sees it in ``variant``."""
    image = read_rgb(row["path"])
    fake = row["label"] == 1
    if variant.startswith("train"):
        rng = np.random.default_rng(_seed(row["path"], variant))
        if fake and rng.random() < 0.5:
            image = jpeg(image, int(rng.integers(85, 96)))
        if variant == "train-processed":
            image, _ = everyday_processing(image, rng)
        if variant.startswith("train-downscaled"):  # train-downscaled, train-downscaled2: two random shrinks
            image = random_downscale(image, rng)
        return image
    if fake:
        image = jpeg(image, 95)
    if variant == "clean":
        return image
    if variant == "jpeg75":
        return jpeg(image, 75)
    if variant == "resize0.5":
        return resize(image, 0.5)
    if variant == "crop0.5":
        return crop(image, 0.5, _seed(row["path"], "crop") % (2**32))
    raise ValueError(variant)


class FeatureCache:
    """Tile features per (image, variant), computed once and kept in ``folder`` (one .npy per entry)."""

    def __init__(self, detector, folder: Path):
        self.detector = detector
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.computed = 0

    def __call__(self, row: dict, variant: str) -> np.ndarray:
        name = f"{row['path']}|{variant}|{self.detector.config.input_size}|features-v{FEATURES_VERSION}"
        key = hashlib.sha256(name.encode()).hexdigest()[:24]
        path = self.folder / f"{key}.npy"
        if path.is_file():
            return np.load(path)
        image = load_variant(row, variant)
        features = self.detector.image_features(image).astype(np.float32)
        if row.get("mask") and variant.startswith("train"):
            # composites: keep the tiles that are all real (label 0) or mostly synthetic (label 1); a last column
            # carries each tile's label
            mask = read_rgb(row["mask"])[..., 0] > 127
            share = np.array([m.mean() for m in self.detector.tiles(np.repeat(mask[..., None], 3, 2))])
            labels = np.where(share >= 0.5, 1.0, np.where(share == 0, 0.0, np.nan))
            features = np.concatenate([features, labels[:, None].astype(np.float32)], 1)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # two runs may share one cache
        np.save(tmp, features)
        tmp.replace(path)
        self.computed += 1
        return features


class WithoutColumns:
    """A feature cache whose answers have ``columns`` set to zero: after standardisation a constant column carries
    no weight, so a probe trained and tested through it never reads them (the features of a smaller design)."""

    def __init__(self, cache: FeatureCache, columns):
        self.cache, self.columns = cache, np.asarray(columns, int)

    def __getattr__(self, name):
        return getattr(self.cache, name)

    def __call__(self, row: dict, variant: str) -> np.ndarray:
        features = self.cache(row, variant)
        if len(self.columns):
            features = features.copy()
            features[:, self.columns] = 0.0
        return features


def tile_rows(features: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    if features.shape[1] == FEATURE_WIDTH + 1:  # a composite with per-tile labels
        labels = features[:, -1]
        keep = ~np.isnan(labels)
        return features[keep, :-1], labels[keep].astype(int)
    return features, np.full(len(features), label)


def training_rows(cache: FeatureCache, train: list[dict], variants=TRAIN_VARIANTS):
    """Tile features, labels and shrunk-copy flags of every training image in ``variants`` (composites: as they are,
    with per-tile labels)."""
    xs, ys, shrunk = [], [], []
    for row in train:
        for variant in ("train-clean",) if row.get("mask") else variants:
            x, y = tile_rows(cache(row, variant), row["label"])
            xs.append(x)
            ys.append(y)
            shrunk.append(np.full(len(y), variant.startswith("train-downscaled")))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(shrunk)


def train_fold(
    config: DetectorConfig,
    cache: FeatureCache,
    train: list[dict],
    calibration: list[dict],
    variants=TRAIN_VARIANTS,
    detector_class=None,
):
    detector = build_detector(config) if detector_class is None else detector_class(config)
    detector.fit_features(*training_rows(cache, train, variants))
    calibration_features = [cache(row, v) for row in calibration for v in CALIBRATION_VARIANTS]
    detector.calibrate_features(calibration_features)
    return detector


def score_rows(detector, cache: FeatureCache, rows: list[dict], variant: str) -> list[dict]:
    return [detector.assess_features(cache(row, variant)) for row in rows]


def score_table(args, detector, cache: FeatureCache, real: list[dict], fake: list[dict]) -> dict:
    """One row per test perturbation: the detector's answers on ``real`` against ``fake``, summarised."""
    return {
        variant: summarise(score_rows(detector, cache, real, variant), score_rows(detector, cache, fake, variant))
        for variant in args.perturbations
    }


def summarise(real: list[dict], fake: list[dict]) -> dict:
    labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    scores = np.r_[[r["score"] for r in real], [r["score"] for r in fake]]

    def share(results, verdict):
        return float(np.mean([r["verdict"] == verdict for r in results])) if results else float("nan")

    by_probe = {}
    if len(fake) and len(real) and "probe_logits" in real[0]:
        for name in real[0]["probe_logits"]:
            values = np.r_[[r["probe_logits"][name] for r in real], [r["probe_logits"][name] for r in fake]]
            by_probe[name] = roc_auc(labels, values)
    return {
        "auc": roc_auc(labels, scores) if len(fake) and len(real) else float("nan"),
        "auc_by_probe": by_probe,
        "tpr": share(fake, "synthetic"),
        "flagged": share(fake, "synthetic") + share(fake, "uncertain"),
        "fake_uncertain": share(fake, "uncertain"),
        "fake_outside": share(fake, "outside calibrated domain"),
        "fpr": share(real, "synthetic"),
        "real_uncertain": share(real, "uncertain"),
        "real_outside": share(real, "outside calibrated domain"),
        "false_positives": int(sum(r["verdict"] == "synthetic" for r in real)),
        "n_real": len(real),
        "n_fake": len(fake),
    }


def subsample(rows: list[dict], n: int, seed: int) -> list[dict]:
    if len(rows) <= n:
        return rows
    keep = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    return [rows[i] for i in sorted(keep)]


def split_sets(args, rows: list[dict]) -> dict:
    reals = [r for r in rows if r["label"] == 0]
    fakes = [r for r in rows if r["label"] == 1]
    sources = sorted({r["source"] for r in reals})
    real_train, real_cal, real_test = [], [], []
    for index, source in enumerate(sources):
        a = subsample(
            [r for r in reals if r["source"] == source and r["side"] == "a"], args.max_real, args.seed + index
        )
        b = [r for r in reals if r["source"] == source and r["side"] == "b"]
        # shuffled before the cut: the manifest lists tiles by scene class and place, and a calibration fifth taken
        # from its end would hold only the last classes, unlike the test tiles (RSSCN7: parking and residential)
        a = [a[i] for i in np.random.default_rng(args.seed + 20 + index).permutation(len(a))]
        cut = int(round(len(a) * 0.8))
        real_train += a[:cut]
        real_cal += a[cut:]
        real_test += subsample(b, args.max_real_test, args.seed + 10 + index)
    families = sorted({r["family"] for r in fakes})
    fake_train, fake_test = [], []
    for family in families:
        # an even share of each family's members (model versions, autoencoders, strengths), up to the cap
        for side, out, cap in (("a", fake_train, args.max_fake), ("b", fake_test, args.max_fake_test)):
            members = [r for r in fakes if r["family"] == family and r["side"] == side]
            generators = sorted({r["generator"] for r in members})
            per = max(1, cap // max(1, len(generators)))
            for generator in generators:
                own = [r for r in members if r["generator"] == generator]
                out += subsample(own, per, args.seed + _seed(f"{family}/{generator}", "subsample") % 1000)
    return {
        "sources": sources,
        "families": families,
        "real_train": real_train,
        "real_cal": real_cal,
        "real_test": real_test,
        "fake_train": fake_train,
        "fake_test": fake_test,
    }


def leave_one_generator_out(args, config, cache, sets) -> dict:
    results = {}
    for family in sets["families"]:
        start = time.perf_counter()
        train = sets["real_train"] + [r for r in sets["fake_train"] if r["family"] != family]
        detector = train_fold(config, cache, train, sets["real_cal"])
        held_out = [r for r in sets["fake_test"] if r["family"] == family]
        results[family] = score_table(args, detector, cache, sets["real_test"], held_out)
        if args.localise and family == "composite":
            results[family]["localisation"] = localisation(detector, held_out, sets["real_test"][::15])
        log(args, f"held out {family}: {time.perf_counter() - start:.0f} s, {cache.computed} feature sets computed")
    if args.localise:
        # stricter: never saw a composite nor the families whose pixels were spliced in (aligned, sdedit)
        excluded = {"composite", "aligned", "sdedit"}
        train = sets["real_train"] + [r for r in sets["fake_train"] if r["family"] not in excluded]
        detector = train_fold(config, cache, train, sets["real_cal"])
        composites = [r for r in sets["fake_test"] if r["family"] == "composite"]
        results["composite"]["localisation_strict"] = localisation(detector, composites, sets["real_test"][::15])
    return results


def leave_one_source_out(args, config, cache, sets) -> dict:
    results = {}
    for source in sets["sources"]:
        train = [r for r in sets["real_train"] if r["source"] != source]
        train += [r for r in sets["fake_train"] if r["source"] != source]
        calibration = [r for r in sets["real_cal"] if r["source"] != source]
        detector = train_fold(config, cache, train, calibration)
        real = [r for r in sets["real_test"] if r["source"] == source]
        results[source] = score_table(args, detector, cache, real, sets["fake_test"])
        # the same detector, its p-values set on the source's own side-a calibration fifth (what `terrasynth detect
        # calibrate` does with a user's genuine images): no retraining, and still no side-b tile of the source
        own = [r for r in sets["real_cal"] if r["source"] == source]
        detector.calibrate_features([cache(row, v) for row in own for v in CALIBRATION_VARIANTS])
        results[f"{source}+calibrated"] = score_table(args, detector, cache, real, sets["fake_test"])
        log(args, f"held out real source {source}: {cache.computed} feature sets computed")
    return results


def leave_source_and_generator_out(args, config, cache, sets) -> dict:
    """Both unseen at once, as outside the lab: for each real source S and family F, train and calibrate with no
    image of S and no image of F; test S's side-b real tiles against F's side-b images."""
    results = {}
    for source in sets["sources"]:
        for family in sets["families"]:
            train = [r for r in sets["real_train"] if r["source"] != source]
            fakes = [r for r in sets["fake_train"] if r["source"] != source and r["family"] != family]
            if not fakes:
                log(args, f"held out {source} and {family}: no synthetic image left to train on, row skipped")
                continue
            train += fakes
            calibration = [r for r in sets["real_cal"] if r["source"] != source]
            detector = train_fold(config, cache, train, calibration)
            real = [r for r in sets["real_test"] if r["source"] == source]
            fake = [r for r in sets["fake_test"] if r["family"] == family]
            results[f"{source}/{family}"] = score_table(args, detector, cache, real, fake)
        log(args, f"held out real source {source} with each family: {cache.computed} feature sets computed")
    return results


def localisation(detector, composites: list[dict], reals: list[dict]) -> dict:
    """IoU of the mask at 0.5 with the true synthetic region of each composite, and the share of a genuine tile's
    area the mask marks (mean over ``reals``)."""
    false_area = [float((detector.localize(load_variant(row, "clean")) > 0.5).mean()) for row in reals]
    ious, ious_large = [], []
    for row in composites:
        image = load_variant(row, "clean")
        truth = read_rgb(row["mask"])[..., 0] > 127
        predicted = detector.localize(image) > 0.5
        union = np.logical_or(truth, predicted).sum()
        iou = float(np.logical_and(truth, predicted).sum() / union) if union else 1.0
        ious.append(iou)
        if truth.mean() >= 0.25:
            ious_large.append(iou)
    return {
        "iou_mean": float(np.mean(ious)),
        "iou_mean_area_25": float(np.mean(ious_large)),
        "n": len(ious),
        "real_false_area": float(np.mean(false_area)),
        "n_real": len(reals),
    }


def log(args, text: str) -> None:
    if not args.quiet:
        print(text, flush=True)


def print_table(title: str, results: dict, perturbations, width: int = 14) -> None:
    print(f"\n{title}")
    print(
        f"  {'held out':<{width}}{'test':<11}{'AUC':>7}{'TPR':>7}{'flag':>7}{'FPR':>7}{'FP':>6}{'unc.':>7}"
        f"{'outside':>9}{'n':>11}"
    )
    for name, rows in results.items():
        for variant in perturbations:
            r = rows[variant]
            n = f"{r['n_real']}/{r['n_fake']}"
            print(
                f"  {name:<{width}}{variant:<11}{r['auc']:7.3f}{r['tpr']:7.3f}{r['flagged']:7.3f}{r['fpr']:7.3f}"
                f"{r['false_positives']:6d}"
                f"{r['real_uncertain']:7.3f}{r['real_outside']:9.3f}{n:>11}"
            )


def print_probe_table(results: dict, perturbations) -> None:
    """Each probe's AUC alone, beside the image score's, per held-out family."""
    names = next(iter(results.values()))[perturbations[0]]["auc_by_probe"].keys()
    if not names:
        return
    print("\nthe image score and each probe alone (AUC, leave-one-generator-out)")
    print(f"  {'held out':<14}{'test':<11}{'score':>7}" + "".join(f"{n:>10}" for n in names))
    for family, rows in results.items():
        for variant in perturbations:
            r = rows[variant]
            print(
                f"  {family:<14}{variant:<11}{r['auc']:7.3f}" + "".join(f"{r['auc_by_probe'][n]:10.3f}" for n in names)
            )


def print_targets(logo: dict, loso: dict) -> None:
    def worst(table, variant, key, pick):
        values = [rows[variant][key] for rows in table.values() if not np.isnan(rows[variant][key])]
        return pick(values) if values else float("nan")

    unseen = {k: v for k, v in loso.items() if not k.endswith("+calibrated")}
    calibrated = {k: v for k, v in loso.items() if k.endswith("+calibrated")}
    lines = [
        ("worst held-out family AUC, clean", worst(logo, "clean", "auc", min), ">=", TARGETS["auc"]),
        ("worst held-out source FPR, clean", worst(unseen, "clean", "fpr", max), "<=", TARGETS["fpr"]),
    ]
    if calibrated:
        lines.append(("  the same, calibrated on the source", worst(calibrated, "clean", "fpr", max), "<=", 0.01))
    for variant in ("jpeg75", "resize0.5"):
        if variant in next(iter(logo.values())):
            lines.append((f"worst held-out family AUC, {variant}", worst(logo, variant, "auc", min), ">=", 0.9))
            lines.append((f"worst held-out source FPR, {variant}", worst(unseen, variant, "fpr", max), "<=", 0.02))
            if calibrated:
                value = worst(calibrated, variant, "fpr", max)
                lines.append(("  the same, calibrated on the source", value, "<=", 0.02))
    composite = logo.get("composite", {})
    for key in ("localisation", "localisation_strict"):
        if key in composite:
            lines.append((f"{key} IoU (area >= 25 %)", composite[key]["iou_mean_area_25"], ">=", TARGETS["iou"]))
    print("\ntargets")
    for label, value, sense, target in lines:
        met = value >= target if sense == ">=" else value <= target
        print(f"  {label:<46}{value:8.3f}  target {sense} {target}: {'met' if met else 'MISSED'}")


def save_shipped(args, config, cache, sets) -> Path:
    """The shipped detector: every family and both sources (both sides' training shares), calibrated on the
    held-back real tiles, the recipe the rows above measure."""
    train = sets["real_train"] + sets["fake_train"] + [r for r in sets["fake_test"] if r["family"] != "composite"]
    detector = train_fold(config, cache, train, sets["real_cal"])
    return detector.save(args.save_detector)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", required=True, help="manifest.csv of benchmarks/detection_sets.py")
    parser.add_argument("--cache", default="runs/detection-features", help="tile features, computed once")
    parser.add_argument("--max-real", type=int, default=600, help="side-a real tiles per source (train + calibration)")
    parser.add_argument("--max-real-test", type=int, default=150, help="side-b real tiles per source")
    parser.add_argument("--max-fake", type=int, default=120, help="side-a synthetic images per family (train)")
    parser.add_argument("--max-fake-test", type=int, default=60, help="side-b synthetic images per family (test)")
    parser.add_argument("--perturbations", nargs="+", default=list(TEST_PERTURBATIONS), choices=TEST_PERTURBATIONS)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--max-tiles", type=int, default=16)
    parser.add_argument("--probe-c", type=float, default=0.05)
    parser.add_argument("--no-localise", dest="localise", action="store_false")
    parser.add_argument(
        "--no-both", dest="both", action="store_false", help="skip the rows with a source and a family held out at once"
    )
    parser.add_argument("--save-detector", help="also train the shipped detector on every family into DIR")
    parser.add_argument(
        "--without-colour",
        action="store_true",
        help="probes that never read the coarse colour statistics, the design they were compared with (their columns "
        "are zero in training, so every probe gives them zero weight)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("-q", "--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    print(f"command: python benchmarks/detection.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    with open(args.sets, newline="") as handle:
        rows = [{**row, "label": int(row["label"])} for row in csv.DictReader(handle)]
    config = DetectorConfig(
        method="probe",
        input_size=args.input_size,
        max_tiles=args.max_tiles,
        probe_c=args.probe_c,
        seed=args.seed,
        trained_on={"sets": str(args.sets), "protocol": "benchmarks/detection.py"},
    )
    cache = FeatureCache(build_detector(config), Path(args.cache))
    if args.without_colour:
        cache = WithoutColumns(cache, COLOUR_COLUMNS)
    sets = split_sets(args, rows)
    counts = {f: sum(r["family"] == f for r in sets["fake_train"] + sets["fake_test"]) for f in sets["families"]}
    print(
        f"sets: real train {len(sets['real_train'])}, calibration {len(sets['real_cal'])}, test "
        f"{len(sets['real_test'])} ({', '.join(sets['sources'])}); synthetic {counts}"
    )
    start = time.perf_counter()
    figures = {
        "config": dataclasses.asdict(config),
        "leave_one_generator_out": leave_one_generator_out(args, config, cache, sets),
        "leave_one_source_out": leave_one_source_out(args, config, cache, sets),
    }
    if args.both:
        figures["leave_source_and_generator_out"] = leave_source_and_generator_out(args, config, cache, sets)
    print_table(
        "leave-one-generator-out (test: side-b real tiles vs the held-out family)",
        figures["leave_one_generator_out"],
        args.perturbations,
    )
    print_table(
        "leave-one-source-out (test: the held-out source's real tiles vs all side-b fakes; +calibrated: p-values set "
        "on the source's own side-a calibration tiles, no retraining)",
        figures["leave_one_source_out"],
        args.perturbations,
        width=24,
    )
    if args.both:
        print_table(
            "leave one source and one family out (test: the held-out source's real tiles vs the held-out family)",
            figures["leave_source_and_generator_out"],
            args.perturbations,
            width=24,
        )
    print_probe_table(figures["leave_one_generator_out"], args.perturbations)
    composite = figures["leave_one_generator_out"].get("composite", {})
    for key in ("localisation", "localisation_strict"):
        if key in composite:
            loc = composite[key]
            print(
                f"\n{key}: IoU mean {loc['iou_mean']:.3f}, area >= 25 %: {loc['iou_mean_area_25']:.3f} (n {loc['n']}); "
                f"area marked on genuine tiles {loc['real_false_area']:.3f} (n {loc['n_real']})"
            )
    print_targets(figures["leave_one_generator_out"], figures["leave_one_source_out"])
    if args.save_detector:
        print(f"\nsaved the shipped detector: {save_shipped(args, config, cache, sets)}")
    print(f"\ntime: {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
