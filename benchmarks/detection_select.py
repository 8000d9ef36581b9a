"""Choose a detector design without looking at the family it will be tested on: nested leave-one-generator-out.

    python benchmarks/detection_select.py --sets runs/detection-sets-v3/manifest.csv --cache runs/detection-features

benchmarks/detection.py tests each family F with a detector that never saw F. A design picked on those rows would
have seen F after all. This script only reads side ``a`` (the benchmark's training side), split again by the tile
every image was made from into ``a1`` (training, calibration) and ``a2`` (test). For every pair of families {F, G}
it trains each candidate design without F and without G, and tests it on F and on G alone. For the outer fold F,
the rows that count are those that tested some G ≠ F: pairs that contain F, scored on the other member. The design
with the best mean AUC over those rows (every perturbation) is the one fold F may use; a design that wins for
every F is the one to ship. The share of G flagged (*synthetic* or *uncertain*) at the operating point is reported
beside it, since a statistic can rank better and still flag less at its calibrated threshold.

With ``--hold-out-source`` every pair is also trained and calibrated without one real source S (no real tile of S,
nothing made from one), and tested on S's own inner test tiles: a new region and a new generator at once, as
outside the lab. The rows of both sources count for each outer fold.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import itertools
import sys
from pathlib import Path

import numpy as np

from terrasynth.detect.detector import DetectorConfig, build_detector
from terrasynth.detect.features import BLOCK_WIDTHS
from terrasynth.detect.probe import JOINT, PEAK_COLUMNS, PROBE_COLUMNS, TRACE_COLUMNS, ProbeDetector

sys.path.insert(0, str(Path(__file__).parent))
from detection import (  # noqa: E402
    CALIBRATION_VARIANTS,
    COLOUR_COLUMNS,
    TEST_PERTURBATIONS,
    TRAIN_VARIANTS,
    FeatureCache,
    WithoutColumns,
    score_rows,
    split_sets,
    summarise,
    train_fold,
)


def origin(row: dict) -> str:
    """The real tile (or layout) an image was made from; everything made from one tile stays on one inner side."""
    path = Path(row["path"])
    if row["label"] == 0 and row["source"] == "rsscn7":
        return f"{path.parent.name}_{path.stem}"
    return path.stem


def inner_side(row: dict, seed: int) -> str:
    digest = hashlib.sha256(f"inner/{seed}/{origin(row)}".encode()).digest()
    return "a1" if digest[0] < 170 else "a2"  # two thirds train, one third test


def inner_split(sets_path: str, seed: int, max_real: int = 600, max_fake: int = 120) -> tuple[list, list]:
    """Side a of the benchmark's sets (as benchmarks/detection.py draws them), split by origin into a1 and a2."""
    with open(sets_path, newline="") as handle:
        rows = [{**row, "label": int(row["label"])} for row in csv.DictReader(handle)]
    defaults = argparse.Namespace(max_real=max_real, max_real_test=150, max_fake=max_fake, max_fake_test=60, seed=seed)
    sets = split_sets(defaults, rows)
    side_a = sets["real_train"] + sets["real_cal"] + sets["fake_train"]
    return [r for r in side_a if inner_side(r, seed) == "a1"], [r for r in side_a if inner_side(r, seed) == "a2"]


def designs() -> dict:
    """Candidate image statistics, each a ProbeDetector whose ``joint``, score (``ranking``) or tile share differs (the
    features and probes do not): an image's logit per probe is the mean of its top quarter of tiles unless the name
    says otherwise, and its score is its image statistic unless the name says otherwise (the shipped detector is
    "max(forensic,content), scored by all three")."""

    class StatisticScored(ProbeDetector):
        """Scored by the image statistic itself, as the shipped detector was until its score read all three probes."""

        @classmethod
        def ranking(cls, stats, in_content=True):
            return cls.joint(stats, in_content)

    class ScoredByMean3(ProbeDetector):
        """Verdicts as shipped; scored by the scaled sum of all three probes' standardised logits, so one probe's
        noise does not set the score as it can set the largest."""

        @staticmethod
        def ranking(stats, in_content=True):
            return sum(stats[n] for n in ("trace", "forensic", "content")) / 3**0.5 if in_content else stats["trace"]

    class ScoredByForensic(ProbeDetector):
        @staticmethod
        def ranking(stats, in_content=True):
            return stats["forensic"] if in_content else stats["trace"]

    class Max3(StatisticScored):
        @staticmethod
        def joint(stats, in_content=True):
            return max(stats[n] for n in ("trace", "forensic", "content")) if in_content else stats["trace"]

    class Mean2(StatisticScored):
        @staticmethod
        def joint(stats, in_content=True):
            return (stats["forensic"] + stats["content"]) / 2**0.5 if in_content else stats["trace"]

    class Forensic(StatisticScored):
        @staticmethod
        def joint(stats, in_content=True):
            return stats["forensic"] if in_content else stats["trace"]

    class JointEverywhere(StatisticScored):
        """The same statistic whether or not the content is like the calibration images' (the verdict still
        abstains there): the score ranks images of a new region on one scale."""

        @staticmethod
        def joint(stats, in_content=True):
            return max(stats[n] for n in JOINT)

    class ForensicOutside(StatisticScored):
        @staticmethod
        def joint(stats, in_content=True):
            return max(stats[n] for n in JOINT) if in_content else stats["forensic"]

    class TopHalf(StatisticScored):
        TOP_SHARE = 0.5

    class AllTiles(StatisticScored):
        TOP_SHARE = 1.0

    return {
        "max(forensic,content)": StatisticScored,
        "max(forensic,content), scored by all three": ProbeDetector,
        "max(forensic,content), scored by the mean of all three": ScoredByMean3,
        "max(forensic,content), scored by the forensic probe": ScoredByForensic,
        "max(forensic,content), top half of tiles": TopHalf,
        "max(forensic,content), all tiles": AllTiles,
        "max(forensic,content) everywhere": JointEverywhere,
        "max(forensic,content), forensic outside the content domain": ForensicOutside,
        "max(all three)": Max3,
        "mean(forensic,content)": Mean2,
        "forensic": Forensic,
    }


@dataclasses.dataclass(frozen=True)
class Training:
    """How the probes of a candidate are trained: detector settings, training variants, feature columns left out
    (set to zero), optional families trained on, and the detector class (which columns each probe reads)."""

    settings: dict = dataclasses.field(default_factory=dict)
    variants: tuple = TRAIN_VARIANTS
    dropped: tuple = ()
    optional: tuple = ()
    detector: type = ProbeDetector


def trace_also_reading(columns) -> type:
    """A ProbeDetector whose trace probe also reads ``columns`` (the shipped one reads no grid peak)."""
    probe_columns = {**PROBE_COLUMNS, "trace": np.r_[TRACE_COLUMNS, columns]}
    return type("TraceAlsoReads", (ProbeDetector,), {"probe_columns": probe_columns})


# "two shrunk copies" won for every outer family (docs/detection_selection.txt) and is the shipped recipe
# (TRAIN_VARIANTS); "three shrunk copies" won too, but lowered the side-b localisation IoU below its target
# (docs/detection.md). An optional family (OPTIONAL_FAMILIES) is more training data under trial: it trains only the
# candidates that name it, and is never one of the held-out pairs
OPTIONAL_FAMILIES = ("smallae",)
SHRUNK_ONCE = ("train-clean", "train-processed", "train-downscaled")
BLOCK_STARTS = np.cumsum((0, *BLOCK_WIDTHS))  # the first feature column of each backbone block, and the end
TRAININGS = {
    "one shrunk copy": Training(variants=SHRUNK_ONCE),
    "C 0.02": Training({"probe_c": 0.02}, SHRUNK_ONCE),
    "C 0.2": Training({"probe_c": 0.2}, SHRUNK_ONCE),
    "two shrunk copies": Training(),
    "two shrunk copies, C 0.01": Training({"probe_c": 0.01}),
    "two shrunk copies, C 0.2": Training({"probe_c": 0.2}),
    "no colour statistics": Training(dropped=tuple(COLOUR_COLUMNS)),
    "three shrunk copies": Training(variants=(*TRAIN_VARIANTS, "train-downscaled3")),
    "boosted forensic probe": Training({"forensic_probe": "boosted"}),
    # the content probe on the four shallower of the backbone's six blocks, or on the three deeper
    "content without the two deepest blocks": Training(dropped=tuple(np.r_[BLOCK_STARTS[4] : BLOCK_STARTS[6]])),
    "content without the three shallowest blocks": Training(dropped=tuple(np.r_[BLOCK_STARTS[0] : BLOCK_STARTS[3]])),
    "with small autoencoders": Training(optional=("smallae",)),
    "no grid peaks": Training(dropped=tuple(PEAK_COLUMNS)),
    "grid peaks in the trace probe too": Training(detector=trace_also_reading(PEAK_COLUMNS)),
    # the up-sampling grids' peaks, not those only a period-8 grid has (a JPEG block grid's, and a ×8 decoder's)
    "period-2 and -4 grid peaks in the trace probe too": Training(detector=trace_also_reading(PEAK_COLUMNS[:4])),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", required=True)
    parser.add_argument("--cache", default="runs/detection-features")
    parser.add_argument("--perturbations", nargs="+", default=list(TEST_PERTURBATIONS), choices=TEST_PERTURBATIONS)
    parser.add_argument("--designs", nargs="+", help="a subset of the candidate image statistics")
    parser.add_argument("--trainings", nargs="+", default=["two shrunk copies"], choices=list(TRAININGS))
    parser.add_argument(
        "--hold-out-source", action="store_true", help="also hold out each real source in turn (tested on its tiles)"
    )
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--max-tiles", type=int, default=16)
    parser.add_argument("--max-real", type=int, default=600, help="as in benchmarks/detection.py")
    parser.add_argument("--max-fake", type=int, default=120, help="as in benchmarks/detection.py")
    parser.add_argument("--probe-c", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def compare(args, cache: FeatureCache, config: DetectorConfig, chosen: dict, inner: dict) -> dict:
    """Every candidate on every pair of families held out (and, with --hold-out-source, every real source): tables
    ``auc``, ``flagged`` (the share of the tested family called synthetic or uncertain at the operating point, what a
    user sees: AUC alone cannot tell a statistic whose calibration threshold rises) and ``false_positives`` (the
    share of real test tiles called synthetic), each ``[candidate][(outer F, tested G, perturbation)]``, keyed
    ``(S, F, G, perturbation)`` with a source held out."""
    tables = {key: {name: {} for name in chosen} for key in ("auc", "flagged", "false_positives")}
    a1, a2, families = inner["a1"], inner["a2"], inner["families"]
    for held_source in inner["sources"] if args.hold_out_source else (None,):
        kept = [r for r in inner["real_train"] if r["source"] != held_source]
        calibration = [r for r in inner["real_cal"] if r["source"] != held_source]
        tested_real = [r for r in inner["real_test"] if held_source in (None, r["source"])]
        for first, second in itertools.combinations(families, 2):
            fakes = [r for r in a1 if r["label"] == 1 and r["family"] not in (first, second)]
            train = kept + [r for r in fakes if r["source"] != held_source and r["family"] in families]
            if all(r["label"] == 0 for r in train):
                print(f"pair {first}/{second} without {held_source}: no synthetic image left to train on, skipped")
                continue
            bases, views = {}, {}
            for t in args.trainings:
                training = TRAININGS[t]
                extra = [r for r in fakes if r["source"] != held_source and r["family"] in training.optional]
                views[t] = WithoutColumns(cache, training.dropped)
                bases[t] = train_fold(
                    dataclasses.replace(config, **training.settings),
                    views[t],
                    train + extra,
                    calibration,
                    training.variants,
                    training.detector,
                )
            for name, (cls, t) in chosen.items():
                base, view = bases[t], views[t]
                detector = cls(base.config)
                detector.__dict__.update({k: v for k, v in base.__dict__.items() if k != "config"})
                detector.config, detector.probe_columns = base.config, base.probe_columns
                detector.calibrate_features([view(r, v) for r in calibration for v in CALIBRATION_VARIANTS])
                for outer, tested in ((first, second), (second, first)):
                    fake = [r for r in a2 if r["family"] == tested]
                    for variant in args.perturbations:
                        result = summarise(
                            score_rows(detector, view, tested_real, variant), score_rows(detector, view, fake, variant)
                        )
                        key = (outer, tested, variant) if held_source is None else (held_source, outer, tested, variant)
                        for table, field in (("auc", "auc"), ("flagged", "flagged"), ("false_positives", "fpr")):
                            tables[table][name][key] = result[field]
            where = "" if held_source is None else f" without {held_source}"
            print(f"pair {first}/{second}{where} done ({cache.computed} feature sets computed)", flush=True)
    return tables


def report(args, tables: dict, chosen: dict, inner: dict) -> tuple[dict, dict]:
    """Print each candidate's mean per outer fold; return the winner per fold by AUC and by share flagged."""
    auc, families = tables["auc"], inner["families"]

    def fold_mean(table: dict, name: str, fold: str) -> float:
        return float(np.mean([v for key, v in table[name].items() if key[-3] == fold]))

    winners, flag_winners = {}, {}
    for title, table, chosen_by in (("AUC", auc, winners), ("share flagged", tables["flagged"], flag_winners)):
        print(f"\nmean {title} over the rows each outer fold may use (inner held-out families, every perturbation)")
        print(f"  {'design':<26}" + "".join(f"{f:>12}" for f in families) + f"{'worst row':>12}")
        for name in chosen:
            means = [fold_mean(table, name, f) for f in families]
            print(f"  {name:<26}" + "".join(f"{m:12.4f}" for m in means) + f"{min(table[name].values()):12.3f}")
        for f in families:
            chosen_by[f] = max(chosen, key=lambda n: fold_mean(table, n, f))
        print(f"chosen per outer fold by {title}: " + ", ".join(f"{f}: {w}" for f, w in chosen_by.items()))

    def mean_where(name: str, index: int, value: str) -> float:
        return float(np.mean([v for key, v in auc[name].items() if key[index] == value]))

    for variant in args.perturbations:
        print(f"  {variant:<10}" + "".join(f"  {name}: {mean_where(name, -1, variant):.4f}" for name in chosen))
    print(
        "real test tiles called synthetic, worst row: "
        + ", ".join(f"{name}: {max(tables['false_positives'][name].values()):.3f}" for name in chosen)
    )
    false_positives = tables["false_positives"]
    for where in inner["sources"] if args.hold_out_source else (None,):
        for variant in args.perturbations:
            line = []
            for name in chosen:
                rates = [v for k, v in false_positives[name].items() if k[-1] == variant and where in (None, k[0])]
                line.append(f"{name}: mean {np.mean(rates):.4f}, worst {max(rates):.3f}")
            label = variant if where is None else f"{variant} without {where}"
            print(f"  called synthetic, {label:<28}" + "  ".join(line))
    if args.hold_out_source:
        for source in inner["sources"]:
            print(
                f"  without {source:<10}" + "".join(f"  {name}: {mean_where(name, 0, source):.4f}" for name in chosen)
            )
    return winners, flag_winners


def main(argv=None):
    args = parse_args(argv)
    print(f"command: python benchmarks/detection_select.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    a1, a2 = inner_split(args.sets, args.seed, args.max_real, args.max_fake)
    real_a1 = [r for r in a1 if r["label"] == 0]
    real_a1 = [real_a1[i] for i in np.random.default_rng(args.seed).permutation(len(real_a1))]
    cut = int(round(len(real_a1) * 0.8))
    inner = {
        "a1": a1,
        "a2": a2,
        "real_train": real_a1[:cut],
        "real_cal": real_a1[cut:],
        "real_test": [r for r in a2 if r["label"] == 0],
        "families": sorted({r["family"] for r in a1 + a2 if r["label"] == 1} - set(OPTIONAL_FAMILIES)),
        "sources": sorted({r["source"] for r in real_a1}),
    }
    print(
        f"inner sets: real train {len(inner['real_train'])}, calibration {len(inner['real_cal'])}, test "
        f"{len(inner['real_test'])}; families {inner['families']}"
        + (f"; each of {inner['sources']} held out in turn" if args.hold_out_source else "")
    )
    config = DetectorConfig(
        method="probe", input_size=args.input_size, max_tiles=args.max_tiles, probe_c=args.probe_c, seed=args.seed
    )
    cache = FeatureCache(build_detector(config), Path(args.cache))
    statistics = {k: v for k, v in designs().items() if not args.designs or k in args.designs}
    chosen = {
        (f"{s} / {t}" if len(args.trainings) > 1 else s): (cls, t)
        for t in args.trainings
        for s, cls in statistics.items()
    }
    tables = compare(args, cache, config, chosen, inner)
    winners, flag_winners = report(args, tables, chosen, inner)
    return {"winners": winners, "flag_winners": flag_winners, **tables, "inner_train": a1, "inner_test": a2}


if __name__ == "__main__":
    main()
