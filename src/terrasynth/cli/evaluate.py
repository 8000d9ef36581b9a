"""``terrasynth evaluate``: realism metrics of generated against real images, and the HTML report. The models it
scores with and compares against are trained by ``train-pix2pix``, ``train-domain`` and ``train-segmenter``
(cli/train.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_evaluate(args) -> int:
    from ..evaluate.evaluation import evaluate_folders
    from ..evaluate.report import format_table

    features = [f.strip() for f in args.features.split(",") if f.strip()]
    results = evaluate_folders(
        args.real,
        args.fake,
        args.out,
        features=features,
        pairs=args.pairs,
        layouts=args.layouts,
        train=args.train,
        strict=args.strict,
        size=args.size,
        segmenter=args.segmenter,
        domain_encoder=args.domain_encoder,
        inception_weights=args.inception_weights,
        kid_subsets=args.kid_subsets,
        memorisation_quantile=args.memorisation_quantile,
        seed=args.seed,
        command="terrasynth " + " ".join(sys.argv[1:]),
    )
    print(format_table(results["rows"], results["ratios"]))
    for note in results["notes"]:
        print(f"note: {note}")
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.html'}")
    return 0


def add_commands(commands, common) -> None:
    evaluate = commands.add_parser("evaluate", help="realism metrics of generated vs real images; HTML report")
    evaluate.add_argument("--real", required=True, help="folder of real images (split in two halves for the floor)")
    evaluate.add_argument("--fake", required=True, help="folder of generated images")
    evaluate.add_argument("--out", required=True, help="report folder (metrics.json, report.html, PNGs)")
    evaluate.add_argument("--pairs", action="store_true", help="SSIM/PSNR/perceptual against same-name real tiles")
    evaluate.add_argument("--layouts", help="folder of layout masks named by id: adds layout fidelity (mIoU)")
    evaluate.add_argument("--train", help="the generator's training images: adds the memorisation check")
    evaluate.add_argument("--features", default="effnet", help="comma-separated: effnet, domain, inception")
    evaluate.add_argument("--size", type=int, help="resize every image to this square size (default: first real)")
    evaluate.add_argument("--segmenter", help="segmenter folder (default: the shipped one)")
    evaluate.add_argument("--domain-encoder", help="domain encoder folder (default: the shipped one)")
    evaluate.add_argument("--inception-weights", help="FID Inception-v3 weights (.pth state dict or .safetensors)")
    evaluate.add_argument("--kid-subsets", type=int, default=100)
    evaluate.add_argument("--memorisation-quantile", type=float, default=0.01)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--strict", action="store_true", help="fail on an unreadable file instead of skipping it")
    evaluate.set_defaults(func=cmd_evaluate)
