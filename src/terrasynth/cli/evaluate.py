"""``terrasynth evaluate``, and training what it scores with and compares against: ``train-pix2pix`` (the
baseline), ``train-domain`` (the domain encoder) and ``train-segmenter`` (the layout-fidelity segmenter)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .overrides import flag_values, load_or_default

# config field: args attribute
PIX2PIX_FLAGS = {
    "paired_roots": "paired",
    "output_dir": "out",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "crop": "crop",
    "checkpoint_every": "checkpoint_every",
}


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


def cmd_train_pix2pix(args) -> int:
    import torch

    from ..train.pix2pix import Pix2PixTrainConfig, train_pix2pix

    config = load_or_default(Pix2PixTrainConfig, args.config, flag_values(args, PIX2PIX_FLAGS))
    dtype = torch.float16 if args.fp16 else None
    print(train_pix2pix(config, resume=args.resume, progress=not args.quiet, dtype=dtype))
    return 0


def cmd_train_recognition(args) -> int:
    from ..train.recognition import train_domain_encoder, train_layout_segmenter
    from ..train.supervised import SupervisedTrainConfig

    defaults = {
        "train-domain": {"steps": 600, "batch_size": 16},
        "train-segmenter": {"steps": 1500, "batch_size": 8, "crop": 128},
    }[args.command]
    flags = {"steps": args.steps, "batch_size": args.batch_size, "crop": args.crop, "seed": args.seed}
    config = load_or_default(SupervisedTrainConfig, None, {**defaults, **{k: v for k, v in flags.items() if v}})
    if args.command == "train-domain":
        splits = (args.train_split, args.val_split)
        result = train_domain_encoder(args.scenes, args.out, args.size, config, args.limit, not args.quiet, splits)
    else:
        splits = (args.train_split, args.val_split)
        result = train_layout_segmenter(args.paired, args.out, args.size, config, args.limit, not args.quiet, splits)
    print(json.dumps(result, indent=2))
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

    pix2pix = commands.add_parser("train-pix2pix", help="train the pix2pix baseline (layout -> image)")
    pix2pix.add_argument("--config", help="training config JSON (flags override it)")
    pix2pix.add_argument("--paired", action="append", default=[], help="paired tiles folder (repeatable)")
    pix2pix.add_argument("--out", help="run folder (the model is written to <out>/model)")
    pix2pix.add_argument("--max-steps", type=int)
    pix2pix.add_argument("--batch-size", type=int)
    pix2pix.add_argument("--crop", type=int)
    pix2pix.add_argument("--checkpoint-every", type=int)
    pix2pix.add_argument("--resume", help="'latest' or a checkpoint folder (a finished run is re-exported)")
    pix2pix.add_argument("--fp16", action="store_true", help="write the final generator in float16 (half the size)")
    pix2pix.set_defaults(func=cmd_train_pix2pix)

    for name, helptext in (
        ("train-domain", "train the domain encoder (scene classifier) for --features domain"),
        ("train-segmenter", "train the layout-fidelity segmenter on real paired tiles"),
    ):
        recognition = commands.add_parser(name, help=helptext)
        if name == "train-domain":
            recognition.add_argument("--scenes", required=True, help="scene folder set (one folder per class)")
        else:
            recognition.add_argument("--paired", required=True, help="paired tiles folder")
        recognition.add_argument("--out", required=True, help="model folder to write")
        recognition.add_argument("--size", type=int, default=256)
        recognition.add_argument("--steps", type=int)
        recognition.add_argument("--batch-size", type=int)
        recognition.add_argument("--crop", type=int)
        recognition.add_argument("--seed", type=int)
        recognition.add_argument("--limit", type=int, help="use at most this many images per split")
        recognition.add_argument("--train-split", default="train")
        recognition.add_argument("--val-split", default="val", help="split scored after training")
        recognition.set_defaults(func=cmd_train_recognition)
