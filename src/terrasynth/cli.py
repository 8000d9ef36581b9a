"""``terrasynth <command>``: the command line over the whole toolkit.

Errors a user can fix (missing files, bad layouts, wrong model folders) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from . import __version__
from .errors import InputError, TerrasynthError

log = logging.getLogger("terrasynth")


# generate -----------------------------------------------------------------------------------------------------


def _same_crs(a: str, b: str) -> bool:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(a) == CRS.from_user_input(b)
    except CRSError:
        return a == b


def _parse_grid(text: str | None, crs: str | None, size: int, layout: str | None = None):
    """``--grid``/``--grid-crs`` → a TileGrid, or None for the GeoJSON features' own box. The grid's CRS
    defaults to the GeoJSON's; a ``--grid-crs`` that differs from it is refused (features are not
    reprojected)."""
    geojson_crs = None
    if layout is not None and Path(layout).suffix.lower() in (".geojson", ".json") and (text or crs):
        from .data.layouts import read_geojson_features

        geojson_crs = read_geojson_features(layout)[1]
    if text is None:
        if crs is not None and geojson_crs is not None and not _same_crs(crs, geojson_crs):
            raise InputError(
                layout,
                f"GeoJSON CRS {geojson_crs} does not match --grid-crs {crs}",
                "reproject the features (e.g. ogr2ogr -t_srs) or drop --grid-crs",
            )
        return None
    from .data.layouts import TileGrid

    try:
        left, bottom, right, top = (float(v) for v in text.split(","))
        return TileGrid((left, bottom, right, top), size, size, crs or geojson_crs or "EPSG:4326")
    except ValueError as error:
        raise InputError(
            None,
            f"--grid must be 'left,bottom,right,top' with right > left and top > bottom, "
            f"got {text!r} ({error})",
        ) from None


def load_layout_argument(args, class_table):
    from .data.layouts import load_layout

    class_map = None
    if args.class_map:
        from .files import read_json

        class_map = read_json(args.class_map)
    grid = _parse_grid(args.grid, args.grid_crs, args.size, args.layout)
    return load_layout(
        args.layout,
        class_table,
        grid=grid,
        class_property=args.class_property,
        class_map=class_map,
        size=args.size,
    )


def cmd_generate(args) -> int:
    from .generate.api import generate_images

    written = generate_images(
        model=args.model,
        prompt=args.prompt,
        layout_path=args.layout,
        out_dir=args.out,
        num_images=args.n,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.guidance,
        scheduler=args.scheduler,
        height=args.height,
        width=args.width,
        class_table_path=args.class_table,
        grid=_parse_grid(args.grid, args.grid_crs, args.size, args.layout),
        class_property=args.class_property,
        class_map_path=args.class_map,
        size=args.size,
        progress=not args.quiet,
    )
    for path in written:
        print(path)
    return 0


def cmd_info(args) -> int:
    from .generate.provenance import describe

    info = describe(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "provenance" and isinstance(value, dict):
            print("provenance:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0


def cmd_demo(args) -> int:
    from .generate.demo import run_demo

    started = time.time()
    page = run_demo(args.out, steps=args.steps, progress=not args.quiet)
    print(f"demo written to {page} in {time.time() - started:.0f} s")
    return 0


# training -----------------------------------------------------------------------------------------------------


def _load_or_default(config_class, path: str | None, overrides: dict):
    """A training config from a JSON file (if given) with command-line flags on top."""
    from .config import config_from_dict
    from .files import read_json

    data = read_json(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(config_class, data, path)


def cmd_train_autoencoder(args) -> int:
    from .train.autoencoder import AutoencoderTrainConfig, train_autoencoder

    config = _load_or_default(
        AutoencoderTrainConfig,
        args.config,
        {
            "paired_roots": tuple(args.paired) or None,
            "scene_roots": tuple(args.scenes) or None,
            "output_dir": args.out,
            "max_steps": args.max_steps,
            "batch_size": args.batch_size,
            "checkpoint_every": args.checkpoint_every,
        },
    )
    print(train_autoencoder(config, resume=args.resume, progress=not args.quiet))
    return 0


def cmd_train(args) -> int:
    from .train.diffusion import DiffusionTrainConfig, train_diffusion

    config = _load_or_default(
        DiffusionTrainConfig,
        args.config,
        {
            "paired_roots": tuple(args.paired) or None,
            "scene_roots": tuple(args.scenes) or None,
            "output_dir": args.out,
            "autoencoder_path": args.autoencoder,
            "init_from": args.init_from,
            "max_steps": args.max_steps,
            "batch_size": args.batch_size,
            "checkpoint_every": args.checkpoint_every,
            "validate_every": args.validate_every,
        },
    )
    print(train_diffusion(config, resume=args.resume, progress=not args.quiet))
    return 0


def cmd_export(args) -> int:
    import torch

    from .config import load_config
    from .train.checkpoints import resolve_checkpoint
    from .train.diffusion import DiffusionTrainConfig, export_checkpoint

    run = Path(args.run)
    config = load_config(DiffusionTrainConfig, run / "config.json")
    checkpoint = resolve_checkpoint(run, args.checkpoint)
    if checkpoint is None:
        raise InputError(run, "no checkpoint to export yet")
    out = export_checkpoint(config, checkpoint, Path(args.out), torch.float16 if args.fp16 else None)
    print(out)
    return 0


def cmd_finetune(args) -> int:
    from .train.finetune import FinetuneConfig, finetune

    metadata = {
        k: v
        for k, v in {"season": args.season, "time_of_day": args.time_of_day, "place": args.place, "gsd_m": args.gsd}
        .items()
        if v is not None
    }
    flags = {
        "method": args.method,
        "base": args.base,
        "data": tuple(args.data) or None,
        "output_dir": args.out,
        "prompt": args.prompt,
        "metadata": metadata or None,
        "class_prompt": args.class_prompt,
        "class_data": args.class_data,
        "num_class_images": args.num_class_images,
        "prior_preservation": False if args.no_prior_preservation else None,
        "placeholder_token": args.token,
        "initializer_token": args.initializer_token,
        "lora_rank": args.rank,
        "layout_encoding": args.layout_encoding,
        "controlnet_init": args.controlnet,
        "resolution": args.resolution,
        "center_crop": args.center_crop,
        "batch_size": args.batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "learning_rate": args.learning_rate,
        "max_steps": args.max_steps,
        "mixed_precision": args.mixed_precision,
        "gradient_checkpointing": True if args.gradient_checkpointing else None,
        "checkpoint_every": args.checkpoint_every,
        "keep_checkpoints": args.keep_checkpoints,
        "validate_every": args.validate_every,
        "validation_prompts": tuple(args.validation_prompt) or None,
        "seed": args.seed,
    }
    config = _load_or_default(FinetuneConfig, args.config, flags)
    print(finetune(config, resume=args.resume, progress=not args.quiet))
    return 0


# study --------------------------------------------------------------------------------------------------------


def _study_extra():
    try:
        import fastapi  # noqa: F401
        import scipy  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise InputError(
            None, f"the study needs the 'study' extra ({error.name} is missing)", "pip install 'terrasynth[study]'"
        ) from None


def cmd_study_serve(args) -> int:
    _study_extra()
    from .study.app import create_app, serve
    from .study.passwords import admin_password_hash_from_env

    password_hash = admin_password_hash_from_env(args.admin_password_env)
    app = create_app(
        args.real,
        args.fake,
        args.db,
        password_hash,
        images_per_rater=args.images_per_rater,
        seed=args.seed,
        title=args.title,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"study at http://{host}:{args.port}/ (admin: /admin, user 'admin'); ratings in {args.db}")
    serve(app, args.host, args.port, log_level="info" if args.verbose else "warning")
    return 0


def cmd_study_report(args) -> int:
    _study_extra()
    from .study.report import make_report

    scores = {}
    for item in args.scores:
        name, _, path = item.rpartition("=") if "=" in item else (Path(item).stem, "", item)
        if not name or not path or name in scores:
            raise InputError(None, f"--scores wants NAME=CSV with distinct names, got {item!r}")
        scores[name] = path
    print(make_report(args.db, args.out, scores, seed=args.seed))
    return 0


# parser -------------------------------------------------------------------------------------------------------


def _with_parents(common: argparse.ArgumentParser):
    class SubcommandParser(argparse.ArgumentParser):
        def __init__(self, **kwargs):
            kwargs.setdefault("parents", [common])
            super().__init__(**kwargs)

    return SubcommandParser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="terrasynth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"terrasynth {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_with_parents(common))

    generate = commands.add_parser("generate", help="make images from a layout and/or a prompt")
    generate.add_argument("--model", default="default", help="model folder or shipped model name (default)")
    generate.add_argument("--layout", help="mask PNG/GeoTIFF, colour-coded map image, or GeoJSON")
    generate.add_argument("--prompt", default="", help="text prompt (empty: unconditional on text)")
    generate.add_argument("--n", type=int, default=4, help="number of images")
    generate.add_argument(
        "--seed", type=int, default=None, help="seed of the first image; image i uses seed+i"
    )
    generate.add_argument("--steps", type=int, default=20)
    generate.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    generate.add_argument("--scheduler", default="dpm++", choices=["dpm++", "ddim", "ddpm", "euler"])
    generate.add_argument("--height", type=int, default=None, help="output height without a layout")
    generate.add_argument("--width", type=int, default=None, help="output width without a layout")
    generate.add_argument("--class-table", help="classes.json of the layout (default: the model's)")
    generate.add_argument(
        "--grid", help="GeoJSON grid bounds 'left,bottom,right,top' (default: features' box)"
    )
    generate.add_argument("--grid-crs", help="CRS of --grid (default: the GeoJSON's)")
    generate.add_argument("--size", type=int, default=256, help="GeoJSON raster size in pixels")
    generate.add_argument("--class-property", default="class", help="GeoJSON property holding the class")
    generate.add_argument("--class-map", help="JSON mapping GeoJSON class values to class names")
    generate.add_argument("--out", required=True, help="output folder")
    generate.set_defaults(func=cmd_generate)

    info = commands.add_parser("info", help="show an image's provenance and georeference")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    demo = commands.add_parser("demo", help="generate from bundled layouts and prompts; write an HTML page")
    demo.add_argument("--out", default="terrasynth-demo")
    demo.add_argument("--steps", type=int, default=20)
    demo.set_defaults(func=cmd_demo)

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

    export = commands.add_parser("export", help="write a training checkpoint's EMA weights as a model folder")
    export.add_argument("--run", required=True)
    export.add_argument("--checkpoint", default="latest")
    export.add_argument("--out", required=True)
    export.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
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

    study = commands.add_parser("study", help="human realism study: serve the rating web app, report results")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    serve = study_commands.add_parser("serve", help="serve the real-vs-synthetic rating web app")
    serve.add_argument("--real", required=True, help="folder of real tiles")
    serve.add_argument("--fake", required=True, help="folder of synthetic tiles")
    serve.add_argument("--db", default="sqlite:///study.db", help="SQLAlchemy URL (default sqlite:///study.db)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--admin-password-env",
        default="TERRASYNTH_STUDY_ADMIN_PASSWORD",
        help="environment variable holding the admin password (or its scrypt hash)",
    )
    serve.add_argument("--images-per-rater", type=int, help="default: twice the smaller set (balanced)")
    serve.add_argument("--seed", type=int, help="seed of the orders drawn (default: random)")
    serve.add_argument("--title", default="Real or synthetic?", help="page title raters see")
    serve.set_defaults(func=cmd_study_serve)
    report = study_commands.add_parser("report", help="accuracy, d', fooling rates, calibration, agreement (HTML)")
    report.add_argument("--db", required=True, help="SQLAlchemy URL of the study's database")
    report.add_argument("--out", required=True, help="output folder (report.html, plots, CSV, JSON)")
    report.add_argument(
        "--scores", action="append", default=[], help="NAME=CSV of per-image scores (columns file,score; repeatable)"
    )
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.set_defaults(func=cmd_study_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except TerrasynthError as error:
        print(f"terrasynth: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("terrasynth: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
