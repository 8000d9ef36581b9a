"""Choose how the forensic probe is fitted (linear, or boosted trees of some setting) on side ``a`` alone.

    python benchmarks/forensic_probe_select.py --sets runs/detection-sets-v3/manifest.csv \
        --cache runs/detection-features

Side ``a`` is split into ``a1`` (training) and ``a2`` (test) as in benchmarks/detection_select.py. Two inner tests
per candidate, the forensic probe alone (image logit: the top quarter of its tile logits):
* **held-out family**: trained on a1 without family F, its AUC on a2 real tiles against a2 images of F;
* **held-out source**: trained without any image of source S, the share of S's a2 real tiles whose logit lies
  above the 99th percentile of the other source's calibration images (clean and after one everyday edit). This is
  how often genuine imagery from an unseen source would reach the tail that makes an image *uncertain*.
The rule, fixed before the candidates were compared: a candidate may not put more of an unseen source's tiles in
that tail than the linear probe does (in any row, 0.02 allowed for noise); of those that pass, the best mean
held-out-family AUC is chosen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from terrasynth.detect.detector import DetectorConfig, build_detector
from terrasynth.detect.evaluate import roc_auc
from terrasynth.detect.probe import PROBE_COLUMNS, linear_probe, top_mean
from terrasynth.detect.trees import BoostedTrees

sys.path.insert(0, str(Path(__file__).parent))
from detection import (  # noqa: E402
    CALIBRATION_VARIANTS,
    TEST_PERTURBATIONS,
    FeatureCache,
    training_rows,
)
from detection_select import OPTIONAL_FAMILIES, inner_split  # noqa: E402

# the settings compared, in the order they were tried; "linear" is the logistic regression of the other probes
CANDIDATES = {
    "linear": None,
    "trees 15 leaves, 200": {"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 15, "l2_regularization": 1.0},
    "depth 3, leaf 500, 100": {"max_iter": 100, "learning_rate": 0.1, "max_depth": 3, "min_samples_leaf": 500},
    "7 leaves, leaf 200, 300": {
        "max_iter": 300,
        "learning_rate": 0.05,
        "max_leaf_nodes": 7,
        "min_samples_leaf": 200,
        "l2_regularization": 1.0,
    },
    "depth 2, leaf 1000, 100": {"max_iter": 100, "learning_rate": 0.1, "max_depth": 2, "min_samples_leaf": 1000},
    "depth 2, leaf 1000, 300": {"max_iter": 300, "learning_rate": 0.1, "max_depth": 2, "min_samples_leaf": 1000},
    "depth 3, leaf 1000, 200": {"max_iter": 200, "learning_rate": 0.1, "max_depth": 3, "min_samples_leaf": 1000},
}
TAIL_SLACK = 0.02


def fit(name: str, x: np.ndarray, y: np.ndarray, probe_c: float):
    """A function from standardised forensic columns to tile logits."""
    if CANDIDATES[name] is None:
        model = linear_probe(probe_c).fit(x, y)
        return lambda z: z @ model.coef_[0] + model.intercept_[0]
    return BoostedTrees.fit(x, y, **CANDIDATES[name]).decision


def training_matrix(cache, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = training_rows(cache, rows)
    return x[:, PROBE_COLUMNS["forensic"]].astype(np.float64), y


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", required=True)
    parser.add_argument("--cache", default="runs/detection-features")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--max-tiles", type=int, default=16)
    parser.add_argument("--probe-c", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"command: python benchmarks/forensic_probe_select.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    a1, a2 = inner_split(args.sets, args.seed)
    cache = FeatureCache(
        build_detector(DetectorConfig(method="probe", input_size=args.input_size, max_tiles=args.max_tiles)),
        Path(args.cache),
    )
    columns = PROBE_COLUMNS["forensic"]
    names = ["linear", *[c for c in args.candidates if c != "linear"]]

    def image_logit(model, mean, scale, row, variant) -> float:
        return top_mean(model((cache(row, variant)[:, columns] - mean) / scale))

    # a family under trial elsewhere (detection_select.OPTIONAL_FAMILIES) is neither trained on nor held out here
    a1 = [r for r in a1 if r["family"] not in OPTIONAL_FAMILIES]
    a2 = [r for r in a2 if r["family"] not in OPTIONAL_FAMILIES]
    families = sorted({r["family"] for r in a1 if r["label"] == 1})
    real_a1 = [r for r in a1 if r["label"] == 0]
    real_a2 = [r for r in a2 if r["label"] == 0]
    auc: dict[str, dict] = {name: {} for name in names}
    for family in families:
        x, y = training_matrix(cache, real_a1 + [r for r in a1 if r["label"] == 1 and r["family"] != family])
        mean, scale = x.mean(0), x.std(0) + 1e-6
        fake = [r for r in a2 if r["family"] == family]
        for name in names:
            model = fit(name, (x - mean) / scale, y, args.probe_c)
            for variant in TEST_PERTURBATIONS:
                scores = [image_logit(model, mean, scale, r, variant) for r in real_a2 + fake]
                labels = np.r_[np.zeros(len(real_a2)), np.ones(len(fake))]
                auc[name][(family, variant)] = roc_auc(labels, np.array(scores))
        print(
            f"held out {family}: "
            + ", ".join(f"{n} {np.mean([v for (f, _), v in auc[n].items() if f == family]):.3f}" for n in names),
            flush=True,
        )

    tail: dict[str, dict] = {name: {} for name in names}
    sources = sorted({r["source"] for r in real_a1})
    for source in sources:
        reals = [r for r in real_a1 if r["source"] != source]
        reals = [reals[i] for i in np.random.default_rng(args.seed).permutation(len(reals))]
        cut = int(len(reals) * 0.8)
        x, y = training_matrix(cache, reals[:cut] + [r for r in a1 if r["label"] == 1 and r["source"] != source])
        mean, scale = x.mean(0), x.std(0) + 1e-6
        unseen = [r for r in real_a2 if r["source"] == source]
        for name in names:
            model = fit(name, (x - mean) / scale, y, args.probe_c)
            calibration = np.sort(
                [image_logit(model, mean, scale, r, v) for r in reals[cut:] for v in CALIBRATION_VARIANTS]
            )
            q99 = calibration[int(0.99 * len(calibration))]
            for variant in TEST_PERTURBATIONS:
                tail[name][(source, variant)] = float(
                    np.mean([image_logit(model, mean, scale, r, variant) > q99 for r in unseen])
                )
        print(f"held out source {source} done", flush=True)

    print("\nheld-out family AUC, forensic probe alone (mean over perturbations; worst row)")
    print(f"  {'candidate':<26}" + "".join(f"{f:>11}" for f in families) + f"{'mean':>8}{'worst':>8}")
    for name in names:
        per = [np.mean([v for (f, _), v in auc[name].items() if f == family]) for family in families]
        print(
            f"  {name:<26}" + "".join(f"{m:11.3f}" for m in per) + f"{np.mean(per):8.3f}{min(auc[name].values()):8.3f}"
        )
    print(
        "  per perturbation: "
        + "; ".join(
            f"{name}: "
            + " ".join(
                f"{v} {np.mean([x for (_, p), x in auc[name].items() if p == v]):.3f}" for v in TEST_PERTURBATIONS
            )
            for name in names
        )
    )
    print("\nshare of an unseen source's genuine tiles above the calibration 99th percentile")
    keys = [(s, v) for s in sources for v in TEST_PERTURBATIONS]
    print(f"  {'candidate':<26}" + "".join(f"{s[:6] + '/' + v:>19}" for s, v in keys) + "  passes")
    passing = []
    for name in names:
        ok = all(tail[name][k] <= tail["linear"][k] + TAIL_SLACK for k in keys)
        if ok:
            passing.append(name)
        print(f"  {name:<26}" + "".join(f"{tail[name][k]:19.2f}" for k in keys) + f"  {'yes' if ok else 'no'}")
    chosen = max(passing, key=lambda n: np.mean(list(auc[n].values())))
    print(f"\nchosen: {chosen} (best mean held-out-family AUC of those that pass the tail rule)")
    return {"auc": auc, "tail": tail, "chosen": chosen, "passing": passing, "inner_train": a1, "inner_test": a2}


if __name__ == "__main__":
    main()
