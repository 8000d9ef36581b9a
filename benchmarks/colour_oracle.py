"""How much of a generated set's FD/KID is colour: score it, then score it again after giving each generated
tile the per-channel mean colour (and, separately, mean and spread) of the real tile of the same layout.

    python benchmarks/colour_oracle.py --generated runs/realism-work-v5/model-...-g2-seed0-256px

``--generated`` is a folder that benchmarks/realism.py filled (``<id>-000.png`` per layout of ``--split``).
If matching colour to the real tile barely moves KID, the gap is texture, not colour. The matched sets are an
oracle (they use the real tiles), a diagnosis only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realism import Subset, effnet_scores, load_split, stack  # noqa: E402
from terrasynth.data.images import read_image  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", required=True, help="folder of <id>-000.png, one per layout of --split")
    parser.add_argument("--data", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--split", default="test")
    parser.add_argument("--reference-split", default="val")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, help="as given to benchmarks/realism.py")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # The tiles benchmarks/realism.py evaluates with its default --floor: the first N of the split, N the
    # reference's size.
    evaluated = load_split(args.data, args.split, args.size, args.limit, args.seed)
    reference = load_split(args.data, args.reference_split, args.size, args.limit, args.seed)
    evaluated = Subset(evaluated.dataset, evaluated.indices[: min(len(reference), len(evaluated))])
    real = stack(evaluated, "image")
    generated = torch.stack(
        [read_image(f"{args.generated}/{sample_id.replace('/', '_')}-000.png") for sample_id in evaluated.ids]
    )
    if generated.shape != real.shape:
        raise SystemExit(f"{args.generated}: images are {tuple(generated.shape[-2:])}, the real tiles {args.size} px")
    score = effnet_scores(stack(reference, "image"), args.size, args.seed)
    mean_real, std_real = real.mean((2, 3), keepdim=True), real.std((2, 3), keepdim=True)
    mean_fake, std_fake = generated.mean((2, 3), keepdim=True), generated.std((2, 3), keepdim=True)
    sets = {
        "real tiles": real,
        "generated": generated,
        "generated, mean colour of its real tile": generated - mean_fake + mean_real,
        "generated, mean and spread of its real tile": (generated - mean_fake) / std_fake.clamp(min=1e-3) * std_real
        + mean_real,
    }
    print(f"python benchmarks/colour_oracle.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"N = {len(real)} ({args.split}); reference {len(reference)} {args.reference_split} tiles; effnet features")
    results = {}
    for name, images in sets.items():
        scores = score(images.clamp(0, 1))
        results[name] = {"FD_effnet": scores["fd_effnet"], "KID_effnet": scores["kid_effnet"]}
        print(f"{name:48s} FD {results[name]['FD_effnet']:7.1f}  KID {results[name]['KID_effnet']:.4f}")
    return results


if __name__ == "__main__":
    main()
