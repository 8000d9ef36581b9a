"""How well the grid peaks alone, with no training, tell each generator family from genuine tiles, and one real
source from another.

    python benchmarks/grid_peaks.py --sets runs/detection-sets-v3/manifest.csv [--per-family 60] [--real 120]

Side-a images only, as the detector's selection reads. Synthetic images are re-encoded as JPEG q95, as the
detection benchmark does, so the file format is no cue; each is read as it is and halved. An image's value per
feature is the largest over its 64-px tiles. The table gives, per family, the AUC of each grid-peak feature (mean
and largest peak height at periods 2, 4 and 8) against the genuine tiles, and last, of the second real source
against the first (0.5: the feature cannot tell them apart).
"""

from __future__ import annotations

import argparse
import csv
import sys

import numpy as np

from terrasynth.detect.detector import read_rgb
from terrasynth.detect.evaluate import roc_auc
from terrasynth.detect.features import PEAK_WIDTH, PERIODS, grid_tiles, residual_features
from terrasynth.detect.perturb import jpeg, resize

COLUMNS = [f"{kind} p{period}" for period in PERIODS for kind in ("mean", "max")]


def peaks_of(image: np.ndarray, size: int = 64) -> np.ndarray:
    return residual_features(grid_tiles(image, size))[:, -PEAK_WIDTH:].max(0)


def load(row: dict, variant: str) -> np.ndarray:
    image = read_rgb(row["path"])
    image = jpeg(image, 95) if int(row["label"]) == 1 else image
    return resize(image, 0.5) if variant == "halved" else image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", required=True)
    parser.add_argument("--per-family", type=int, default=60)
    parser.add_argument("--real", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"command: python benchmarks/grid_peaks.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    with open(args.sets, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["side"] == "a"]
    rng = np.random.default_rng(args.seed)

    def pick(family: str, k: int) -> list[dict]:
        found = [r for r in rows if r["family"] == family]
        return [found[i] for i in sorted(rng.choice(len(found), min(k, len(found)), replace=False))]

    real = pick("real", args.real)
    families = sorted({r["family"] for r in rows} - {"real"})
    sets = {"real": real, **{f: pick(f, args.per_family) for f in families}}
    sources = sorted({r["source"] for r in real})
    results = {}
    for variant in ("clean", "halved"):
        values = {name: np.array([peaks_of(load(r, variant)) for r in chosen]) for name, chosen in sets.items()}
        print(f"\n{variant}: AUC of each feature alone ({len(real)} genuine images)")
        print(f"  {'against genuine':<24}" + "".join(f"{c:>10}" for c in COLUMNS) + f"{'n':>6}")
        pairs = [(f, values["real"], values[f]) for f in families]
        if len(sources) == 2:
            first = np.array([r["source"] == sources[0] for r in real])
            pairs.append((f"{sources[1]} vs {sources[0]}", values["real"][first], values["real"][~first]))
        for name, negative, positive in pairs:
            labels = np.r_[np.zeros(len(negative)), np.ones(len(positive))]
            aucs = [roc_auc(labels, np.r_[negative[:, j], positive[:, j]]) for j in range(PEAK_WIDTH)]
            results[(variant, name)] = aucs
            print(f"  {name:<24}" + "".join(f"{a:10.2f}" for a in aucs) + f"{len(positive):6d}")
    return results


if __name__ == "__main__":
    main()
