"""Watermark figures: bit accuracy and payload recovery under perturbations, false positives on unmarked real tiles,
PSNR, localisation on composites, and speed, for each scheme.

    python benchmarks/watermark.py --real ../shared/data/landcoverai_pairs/images --real ../shared/data/rsscn7 \\
        --n 3521 --robust-n 300 --json watermark.json

Protocol. ``--n`` real tiles (a seeded sample of every image under the ``--real`` folders) are read *unmarked*,
clean and after JPEG 75: a false positive is any valid payload (the keyed 24-bit check passed); its exact
one-sided 95 % upper bound is given. For ``ts-sync-v2`` the share of those reads whose detection score reaches the
scheme's threshold is given too (the score's own null rate; a payload needs both). ``--robust-n`` of them
(seeded) are marked, each with a random 40-bit payload: PSNR is of marked vs clean; each perturbation is applied to
the marked tile and read back; bit accuracy is of the 64 bits read against the word embedded, "recovered" the
share whose payload passes the check and equals the embedded one. ``crop0.5`` keeps half of each side at a random
offset (seeded per tile), ``crop0.5+jpeg75`` then re-encodes it; ``rot*`` and ``flip`` (left-right) are exact.
Localisation: ``robust-n // 2`` composites of each kind, ``in50``/``in70`` a marked square of 50 %/70 % of the side
(cut at a random place from a marked tile) pasted at a random place into another, unmarked tile,
``out50``/``out70`` the converse (an unmarked square pasted into a marked tile); the IoU is of the map thresholded
at 0.5 vs the marked pixels, and the payload read from the composite is counted too. Times are CPU time
(``time.process_time``; wall time on a shared machine measures the neighbours): embedding, reading a marked tile,
reading an unmarked one (the reader's whole search), and locating.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from terrasynth.detect.detector import load_image_folders
from terrasynth.detect.perturb import blur, jpeg, resize
from terrasynth.evaluate.paired import psnr_uint8
from terrasynth.generate.watermark import (
    DEFAULT_SCHEME,
    V1_SCHEME,
    encode_word,
    get_scheme,
    locate_watermark,
)


def upper_bound_95(failures: int, n: int) -> float:
    """Exact (Clopper-Pearson) one-sided 95 % upper bound of a rate with ``failures`` out of ``n``."""
    from scipy.stats import beta

    return 1.0 if failures >= n else float(beta.ppf(0.95, failures + 1, n - failures))


def crop_half(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half of each side at a random offset, at native resolution."""
    height, width = image.shape[:2]
    h, w = height // 2, width // 2
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return np.ascontiguousarray(image[top : top + h, left : left + w])


PERTURBATIONS = {
    "clean": lambda x, rng: x,
    "jpeg95": lambda x, rng: jpeg(x, 95),
    "jpeg75": lambda x, rng: jpeg(x, 75),
    "jpeg50": lambda x, rng: jpeg(x, 50),
    "resize0.5": lambda x, rng: resize(x, 0.5),
    "resize0.75": lambda x, rng: resize(x, 0.75),
    "resize1.5": lambda x, rng: resize(x, 1.5),
    "resize2": lambda x, rng: resize(x, 2.0),
    "blur1": lambda x, rng: blur(x, 1.0),
    "crop0.5": lambda x, rng: crop_half(x, rng),
    "crop0.5+jpeg75": lambda x, rng: jpeg(crop_half(x, rng), 75),
    "rot90": lambda x, rng: np.ascontiguousarray(np.rot90(x, 1)),
    "rot180": lambda x, rng: np.ascontiguousarray(np.rot90(x, 2)),
    "rot270": lambda x, rng: np.ascontiguousarray(np.rot90(x, 3)),
    "flip": lambda x, rng: np.ascontiguousarray(x[:, ::-1]),
}
COMPOSITES = ("in50", "in70", "out50", "out70")


def _read(scheme, image: np.ndarray):
    try:
        return scheme.read(image)
    except ValueError:  # too small for the scheme (the baseline reads 256 px and more): nothing read
        return None


def composite(
    marked: np.ndarray, other: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(composite, bool map of its marked pixels) of a marked tile and another, unmarked one (same size)."""
    height, width = marked.shape[:2]
    side = 0.5 if kind.endswith("50") else 0.7
    h, w = round(height * side), round(width * side)
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    square = np.zeros((height, width), bool)
    square[top : top + h, left : left + w] = True
    if kind.startswith("in"):  # a marked square, cut anywhere in the marked tile, pasted into the other
        st, sl = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        result = other.copy()
        result[top : top + h, left : left + w] = marked[st : st + h, sl : sl + w]
        return result, square
    result = marked.copy()
    result[top : top + h, left : left + w] = other[top : top + h, left : left + w]
    return result, ~square


def watermark_figures(images: list[np.ndarray], scheme_name: str, robust_n: int, seed: int = 0) -> dict:
    scheme = get_scheme(scheme_name)
    rng = np.random.default_rng(seed)
    rows = {name: {"bit_accuracy": [], "recovered": [], "unreadable": []} for name in PERTURBATIONS}
    psnrs, embed_times, read_times, blank_times, locate_times = [], [], [], [], []
    chosen = sorted(rng.choice(len(images), min(robust_n, len(images)), replace=False))
    sizes: dict[str, int] = {}
    marked_tiles = {}
    for index in chosen:
        image = images[index]
        size = f"{image.shape[1]}x{image.shape[0]}"
        sizes[size] = sizes.get(size, 0) + 1
        payload = int(rng.integers(0, 1 << 40))
        word = encode_word(payload)
        start = time.process_time()
        try:
            marked = scheme.embed(image, word)
        except ValueError:  # too small for the scheme
            continue
        embed_times.append(time.process_time() - start)
        psnrs.append(psnr_uint8(image, marked))
        marked_tiles[index] = (marked, payload)
        for name, perturbation in PERTURBATIONS.items():
            attacked = perturbation(marked, np.random.default_rng([seed, int(index)]))
            start = time.process_time()
            reading = _read(scheme, attacked)
            if name == "clean":
                read_times.append(time.process_time() - start)
            rows[name]["unreadable"].append(reading is None)
            rows[name]["bit_accuracy"].append(0.5 if reading is None else reading.bit_accuracy(word))
            rows[name]["recovered"].append(reading is not None and reading.payload == payload)
    false_positives, detections = {}, {}
    threshold = getattr(scheme, "threshold", None)
    for name in ("clean", "jpeg75"):
        hits, scores = 0, []
        for image in images:
            unmarked = image if name == "clean" else jpeg(image, 75)
            start = time.process_time()
            reading = _read(scheme, unmarked)
            if name == "clean":
                blank_times.append(time.process_time() - start)
            hits += reading is not None and reading.valid
            if reading is not None and reading.detection is not None:
                scores.append(reading.detection)
        false_positives[name] = {
            "hits": int(hits),
            "n": len(images),
            "rate": hits / len(images),
            "upper95": upper_bound_95(int(hits), len(images)),
        }
        if scores and threshold is not None:
            above = int(np.sum(np.array(scores) >= threshold))
            detections[name] = {
                "threshold": threshold,
                "above": above,
                "n": len(scores),
                "p50": float(np.median(scores)),
                "p99": float(np.percentile(scores, 99)),
                "max": float(np.max(scores)),
            }
    localisation = {}
    marked_indices = list(marked_tiles)
    for kind in COMPOSITES:
        ious, recovered, shares = [], [], []
        for index in marked_indices[: max(1, robust_n // 2)]:
            marked, payload = marked_tiles[index]
            others = [i for i in range(len(images)) if i != index and images[i].shape == marked.shape]
            if not others:
                continue
            other = images[others[int(rng.integers(len(others)))]]
            mixed, truth = composite(marked, other, kind, rng)
            shares.append(float(truth.mean()))
            start = time.process_time()
            found = locate_watermark(mixed, scheme_name) >= 0.5
            locate_times.append(time.process_time() - start)
            ious.append(float((found & truth).sum() / max((found | truth).sum(), 1)))
            reading = _read(scheme, mixed)
            recovered.append(reading is not None and reading.payload == payload)
        if ious:
            localisation[kind] = {
                "n": len(ious),
                "marked_share": float(np.mean(shares)),
                "iou_mean": float(np.mean(ious)),
                "iou_median": float(np.median(ious)),
                "iou_share_at_least_0.7": float(np.mean(np.array(ious) >= 0.7)),
                "recovered": float(np.mean(recovered)),
            }
    return {
        "scheme": scheme_name,
        "n_robust": len(psnrs),
        "psnr_mean": float(np.mean(psnrs)),
        "psnr_min": float(np.min(psnrs)),
        "psnr_p5": float(np.percentile(psnrs, 5)),
        "psnr_share_at_least_40db": float(np.mean(np.array(psnrs) >= 40.0)),
        "embed_ms_median": 1000 * float(np.median(embed_times)),
        "read_ms_median": 1000 * float(np.median(read_times)),
        "read_unmarked_ms_median": 1000 * float(np.median(blank_times)),
        "read_unmarked_ms_max": 1000 * float(np.max(blank_times)),
        "locate_ms_median": 1000 * float(np.median(locate_times)) if locate_times else None,
        "sizes": sizes,
        "perturbations": {k: {m: float(np.mean(v)) for m, v in row.items()} for k, row in rows.items()},
        "false_positives": false_positives,
        "detection_null": detections,
        "localisation": localisation,
    }


def print_watermark(result: dict) -> None:
    sizes = ", ".join(f"{n} at {size}" for size, n in sorted(result["sizes"].items()))
    print(
        f"\nwatermark {result['scheme']}: {result['n_robust']} marked tiles ({sizes}); "
        f"PSNR mean {result['psnr_mean']:.2f} dB (5th percentile {result['psnr_p5']:.2f}, "
        f"min {result['psnr_min']:.2f}, {result['psnr_share_at_least_40db']:.1%} of tiles >= 40 dB)"
    )
    locate = "" if result["locate_ms_median"] is None else f", locate {result['locate_ms_median']:.0f}"
    print(
        f"  CPU ms (median): embed {result['embed_ms_median']:.1f}, read marked {result['read_ms_median']:.0f}, "
        f"read unmarked {result['read_unmarked_ms_median']:.0f} (max {result['read_unmarked_ms_max']:.0f}){locate}"
    )
    print(f"  {'perturbation':<16}{'bit acc':>9}{'recovered':>11}{'unreadable':>12}")
    for name, row in result["perturbations"].items():
        print(f"  {name:<16}{row['bit_accuracy']:9.4f}{row['recovered']:11.3f}{row['unreadable']:12.3f}")
    for name, fp in result["false_positives"].items():
        print(
            f"  false positives on unmarked real tiles ({name}): {fp['hits']}/{fp['n']} = {fp['rate']:.4%} "
            f"(95 % upper bound {fp['upper95']:.4%})"
        )
    for name, d in result["detection_null"].items():
        print(
            f"  detection score on unmarked tiles ({name}): median {d['p50']:.2f}, 99th percentile {d['p99']:.2f}, "
            f"max {d['max']:.2f}; {d['above']}/{d['n']} reach the threshold {d['threshold']}"
        )
    if result["localisation"]:
        print(f"  {'composite':<10}{'marked':>8}{'IoU mean':>10}{'median':>8}{'>= 0.7':>8}{'recovered':>11}{'n':>5}")
        for kind, loc in result["localisation"].items():
            print(
                f"  {kind:<10}{loc['marked_share']:8.2f}{loc['iou_mean']:10.3f}{loc['iou_median']:8.3f}"
                f"{loc['iou_share_at_least_0.7']:8.2f}{loc['recovered']:11.3f}{loc['n']:5d}"
            )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="append", required=True, help="folder of real tiles (repeatable)")
    parser.add_argument("--n", type=int, default=2000, help="unmarked real tiles read for the false-positive rate")
    parser.add_argument("--robust-n", type=int, default=300, help="tiles marked for robustness, PSNR, localisation")
    parser.add_argument(
        "--scheme", action="append", default=None, help=f"scheme (repeatable; default {DEFAULT_SCHEME} and {V1_SCHEME})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    args.scheme = args.scheme or [DEFAULT_SCHEME, V1_SCHEME]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    print(f"command: python benchmarks/watermark.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}")
    images = load_image_folders(args.real, args.n, args.seed)
    print(f"tiles: {len(images)} from {', '.join(args.real)}")
    figures: dict = {"command": sys.argv if argv is None else ["benchmarks/watermark.py", *argv], "schemes": {}}
    for name in args.scheme:
        start = time.perf_counter()
        figures["schemes"][name] = watermark_figures(images, name, args.robust_n, args.seed)
        print_watermark(figures["schemes"][name])
        print(f"  ({time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
