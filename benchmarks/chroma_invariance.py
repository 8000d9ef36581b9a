"""How far the detector's tile features move when a genuine image's colour is re-stored at half resolution.

    python benchmarks/chroma_invariance.py [--images ../shared/data/landcoverai_pairs/images] [--n 60]

The images (JPEG 4:4:4 as LandCover.ai is stored, or anything else) are read as they are and after re-encoding as
JPEG q95 with 4:2:0 chroma subsampling, which most encoders use. For each feature group the table gives the largest
mean shift of one feature, in units of that feature's spread between the tiles: how much the storage choice alone
can move what a probe reads. The last row is the colour statistics at full resolution (σ 0), as an earlier version
of the detector read them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from terrasynth.detect.features import (
    RESIDUAL_WIDTH,
    canonical_chroma,
    colour_features,
    deep_features,
    grid_tiles,
    naturalness_features,
    residual_features,
)
from terrasynth.detect.perturb import jpeg

REPO = Path(__file__).resolve().parents[1]


def tiles_of(images: list[np.ndarray], size: int = 64) -> np.ndarray:
    return np.concatenate([grid_tiles(x, size) for x in images])


def largest_shift(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b) / (a.std(0) + 1e-6)).mean(0).max())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "landcoverai_pairs" / "images"))
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args(argv)
    print(f"command: python benchmarks/chroma_invariance.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif"})
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths[: args.n]]
    stored, half = tiles_of(images), tiles_of([jpeg(x, 95) for x in images])
    groups = {
        "backbone (chroma low-passed, σ 1.5)": lambda t: deep_features(canonical_chroma(t)),
        f"luma residual statistics ({RESIDUAL_WIDTH})": residual_features,
        "natural-scene statistics (36)": naturalness_features,
        "colour statistics, σ 3 (shipped)": colour_features,
        "colour statistics, full resolution (earlier)": lambda t: colour_features(t, 0.0),
    }
    print(f"{len(images)} images, {len(stored)} tiles of 64 px; largest shift of one feature, in spreads between tiles")
    results = {}
    for name, features in groups.items():
        results[name] = largest_shift(features(stored), features(half))
        print(f"  {name:<46} {results[name]:6.3f}")
    return results


if __name__ == "__main__":
    main()
