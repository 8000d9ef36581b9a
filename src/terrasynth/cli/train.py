"""``terrasynth train-autoencoder | train | export | finetune``: training the generators; ``train-pix2pix`` (the
baseline generator), ``train-domain`` (the domain encoder of ``--features domain``) and ``train-segmenter`` (the
layout-fidelity segmenter): training what ``terrasynth evaluate`` compares against and scores with."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .overrides import flag_values, load_or_default

# config field: args attribute
RUN_FLAGS = {
    "paired_roots": "paired",
    "scene_roots": "scenes",
    "output_dir": "out",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "checkpoint_every": "checkpoint_every",
}
DIFFUSION_FLAGS = {
    **RUN_FLAGS,
    "autoencoder_path": "autoencoder",
    "init_from": "init_from",
    "validate_every": "validate_every",
}
PIX2PIX_FLAGS = {
    "paired_roots": "paired",
    "output_dir": "out",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "crop": "crop",
    "checkpoint_every": "checkpoint_every",
}
FINETUNE_FLAGS = {
    "method": "method",
    "base": "base",
    "data": "data",
    "output_dir": "out",
    "prompt": "prompt",
    "class_prompt": "class_prompt",
    "class_data": "class_data",
    "num_class_images": "num_class_images",
    "placeholder_token": "token",
    "initializer_token": "initializer_token",
    "lora_rank": "rank",
    "layout_encoding": "layout_encoding",
    "controlnet_init": "controlnet",
    "resolution": "resolution",
    "center_crop": "center_crop",
    "batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "learning_rate": "learning_rate",
    "max_steps": "max_steps",
    "mixed_precision": "mixed_precision",
    "checkpoint_every": "checkpoint_every",
    "keep_checkpoints": "keep_checkpoints",
    "validate_every": "validate_every",
    "validation_prompts": "validation_prompt",
    "seed": "seed",
}


def cmd_train_autoencoder(args) -> int:
    from ..train.autoencoder import AutoencoderTrainConfig, train_autoencoder

    config = load_or_default(AutoencoderTrainConfig, args.config, flag_values(args, RUN_FLAGS))
    print(train_autoencoder(config, resume=args.resume, progress=not args.quiet))
    return 0


def cmd_train(args) -> int:
    from ..train.diffusion import DiffusionTrainConfig, train_diffusion

    config = load_or_default(DiffusionTrainConfig, args.config, flag_values(args, DIFFUSION_FLAGS))
    print(train_diffusion(config, resume=args.resume, progress=not args.quiet))
    return 0


def cmd_export(args) -> int:
    import torch

    from ..config import load_config
    from ..train.checkpoints import resolve_checkpoint
    from ..train.diffusion import DiffusionTrainConfig
    from ..train.export import export_checkpoint, reexport_model

    dtype = torch.float16 if args.fp16 else None
    mean_prior, mean_prior_settings = _mean_prior_change(args)
    if args.model:
        changes = (args.guidance_scale, args.sampling_steps)
        if not (args.vae or args.name or any(v is not None for v in changes) or mean_prior or mean_prior_settings):
            raise InputError(
                args.model,
                "--model re-exports a model folder with changes: give --vae, --name, --guidance-scale, "
                "--sampling-steps, --mean-prior or --mean-prior-start/--mean-prior-neighbours",
            )
        out = reexport_model(
            args.model,
            args.vae,
            Path(args.out),
            dtype,
            args.name,
            guidance_scale=args.guidance_scale,
            mean_prior=mean_prior,
            sampling_steps=args.sampling_steps,
            mean_prior_settings=mean_prior_settings,
        )
        print(out)
        return 0
    if args.name:
        raise InputError(None, "--name applies to --model re-exports only (a run's name is in its config)")
    run = Path(args.run)
    config = load_config(DiffusionTrainConfig, run / "config.json")
    checkpoint = resolve_checkpoint(run, args.checkpoint)
    if checkpoint is None:
        raise InputError(run, "no checkpoint to export yet")
    out = export_checkpoint(
        config,
        checkpoint,
        Path(args.out),
        dtype,
        vae_path=args.vae,
        guidance_scale=args.guidance_scale,
        mean_prior=mean_prior,
        sampling_steps=args.sampling_steps,
        mean_prior_settings=mean_prior_settings,
    )
    print(out)
    return 0


def _mean_prior_change(args):
    """(a source to fit a mean prior on, or None; the MeanPriorConfig fields given, or None). Without
    ``--mean-prior DATA``, a re-exported model's fitted prior keeps its table and only its settings change."""
    from ..train.export import MeanPriorSource

    given = {"neighbours": args.mean_prior_neighbours, "start": args.mean_prior_start}
    given = {name: value for name, value in given.items() if value is not None} or None
    if args.mean_prior is None:
        if given and not args.model:
            raise InputError(None, "--mean-prior-neighbours and --mean-prior-start need --mean-prior DATA")
        return None, given
    source = MeanPriorSource(args.mean_prior, args.mean_prior_split, args.mean_prior_size, progress=not args.quiet)
    return source, given


def cmd_finetune(args) -> int:
    from ..train.finetune import FinetuneConfig, finetune

    words = {"season": args.season, "time_of_day": args.time_of_day, "place": args.place, "gsd_m": args.gsd}
    metadata = {k: v for k, v in words.items() if v is not None}
    flags = {
        **flag_values(args, FINETUNE_FLAGS),
        "metadata": metadata or None,
        "prior_preservation": False if args.no_prior_preservation else None,
        "gradient_checkpointing": True if args.gradient_checkpointing else None,
    }
    config = load_or_default(FinetuneConfig, args.config, flags)
    print(finetune(config, resume=args.resume, progress=not args.quiet))
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
    if args.command == "train-segmenter":
        flags["class_weighting"] = "balanced" if args.class_balanced else None
        flags["rare_crop_share"] = args.rare_crops
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
    for name, func, helptext in (
        ("train-autoencoder", cmd_train_autoencoder, "train the autoencoder the embedded model diffuses in"),
        ("train", cmd_train, "train the embedded diffusion model"),
    ):
        train = commands.add_parser(name, help=helptext)
        train.add_argument("--config", help="training config JSON (flags override it)")
        train.add_argument("--paired", action="append", default=[], help="paired tiles folder (repeatable)")
        train.add_argument("--scenes", action="append", default=[], help="scene folder set (repeatable)")
        train.add_argument("--out", help="run folder")
        train.add_argument("--max-steps", type=int)
        train.add_argument("--batch-size", type=int)
        train.add_argument("--checkpoint-every", type=int)
        train.add_argument("--resume", help="'latest' or a checkpoint folder")
        if name == "train":
            train.add_argument("--autoencoder", help="folder of a trained autoencoder")
            train.add_argument("--init-from", help="model folder to start from")
            train.add_argument("--validate-every", type=int)
        train.set_defaults(func=func)

    export = commands.add_parser(
        "export",
        help="write a training checkpoint's EMA weights as a model folder, or re-export a model with a new decoder",
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="training run folder")
    source.add_argument("--model", help="model folder to re-export with --vae's decoder")
    export.add_argument("--name", help="new model name (with --model)")
    export.add_argument(
        "--guidance-scale", type=float, help="the guidance scale generation uses by default with this model"
    )
    export.add_argument(
        "--sampling-steps", type=int, help="the number of sampling steps generation takes by default with this model"
    )
    export.add_argument("--checkpoint", default="latest")
    export.add_argument("--out", required=True)
    export.add_argument("--overwrite", action="store_true", help="replace a model folder already at --out")
    export.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    export.add_argument(
        "--vae", help="autoencoder with a refined decoder (same encoder) to ship in place of the model's"
    )
    export.add_argument(
        "--mean-prior",
        metavar="DATA",
        help="paired tiles folder: fit a mean prior on its tiles (each generated tile's global colour is drawn from "
        "those with the nearest class shares) and ship it",
    )
    export.add_argument("--mean-prior-split", default="train", help="split of --mean-prior's tiles (default train)")
    export.add_argument(
        "--mean-prior-size", type=int, default=256, help="tile size the prior is fitted at: the size generated at"
    )
    export.add_argument(
        "--mean-prior-neighbours",
        type=int,
        help="nearest training tiles drawn from (default: the model's own, else 8; without --mean-prior, changes "
        "--model's fitted prior)",
    )
    export.add_argument(
        "--mean-prior-start",
        type=float,
        help="sampling starts at the first timestep t with t/T <= this, from the drawn mean (default: the model's "
        "own, else 0.9; without --mean-prior, changes --model's fitted prior)",
    )
    export.set_defaults(func=cmd_export)

    tune = commands.add_parser(
        "finetune",
        help="fine-tune Stable Diffusion (text2img, DreamBooth, textual inversion, LoRA, ControlNet)",
        description="Scale out with `accelerate launch -m terrasynth.cli finetune ...`.",
    )
    tune.add_argument("--config", help="fine-tuning config JSON (flags override it)")
    tune.add_argument("--method", choices=["text2img", "dreambooth", "textual-inversion", "lora", "controlnet"])
    tune.add_argument("--base", help="Stable Diffusion diffusers folder or hub id")
    tune.add_argument(
        "--data", action="append", default=[], help="paired tiles, scene folders or an image folder (repeatable)"
    )
    tune.add_argument("--out", help="run folder (the model is saved in OUT/model)")
    tune.add_argument("--prompt", help="fixed prompt: DreamBooth instance prompt, textual-inversion {token} template")
    tune.add_argument("--season", help="season word added to every caption (e.g. winter)")
    tune.add_argument("--time-of-day", help="time-of-day word added to every caption (e.g. morning)")
    tune.add_argument("--place", help="place added to every caption (e.g. 'Kraków')")
    tune.add_argument("--gsd", type=float, help="ground sampling distance in metres, added to every caption")
    tune.add_argument("--class-prompt", help="DreamBooth prior-preservation prompt (default 'aerial image')")
    tune.add_argument("--class-data", help="folder of DreamBooth class images (default: made by the base model)")
    tune.add_argument("--num-class-images", type=int)
    tune.add_argument("--no-prior-preservation", action="store_true", help="DreamBooth without the prior loss")
    tune.add_argument("--token", help="textual-inversion placeholder token (default <site>)")
    tune.add_argument("--initializer-token", help="word the new token starts from (default 'site')")
    tune.add_argument("--rank", type=int, help="LoRA rank (default 4)")
    tune.add_argument("--layout-encoding", choices=["color", "onehot"], help="ControlNet layout input")
    tune.add_argument("--controlnet", help="ControlNet folder or hub id to start from (default: copy the UNet)")
    tune.add_argument("--resolution", type=int, help="training size in pixels (default: the base's)")
    tune.add_argument("--center-crop", action="store_true", default=None, help="centre crops (default random)")
    tune.add_argument("--batch-size", type=int)
    tune.add_argument("--gradient-accumulation-steps", type=int)
    tune.add_argument("--learning-rate", type=float, help="default depends on the method")
    tune.add_argument("--max-steps", type=int)
    tune.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    tune.add_argument("--gradient-checkpointing", action="store_true")
    tune.add_argument("--checkpoint-every", type=int)
    tune.add_argument("--keep-checkpoints", type=int)
    tune.add_argument("--validate-every", type=int, help="write validation images every N steps (0: never)")
    tune.add_argument("--validation-prompt", action="append", default=[], help="validation prompt (repeatable)")
    tune.add_argument("--seed", type=int)
    tune.add_argument("--resume", help="'latest' or a checkpoint folder")
    tune.set_defaults(func=cmd_finetune)

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
        if name == "train-segmenter":
            recognition.add_argument(
                "--class-balanced",
                action="store_true",
                help="weight the loss by median class frequency / class frequency (capped at 10)",
            )
            recognition.add_argument(
                "--rare-crops",
                type=float,
                metavar="SHARE",
                help="share of crops centred on a pixel of a rare class (under 5 %% of training pixels); needs --crop",
            )
        recognition.add_argument("--train-split", default="train")
        recognition.add_argument("--val-split", default="val", help="split scored after training")
        recognition.set_defaults(func=cmd_train_recognition)
