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
        watermark=not args.no_watermark,
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


# detect and verify --------------------------------------------------------------------------------------------


def cmd_detect_train(args) -> int:
    from .config import config_from_dict
    from .detect.detector import DetectorConfig, load_image_folders, train_detector
    from .files import read_json

    data = read_json(args.config) if args.config else {}
    flags = {"method": args.method, "input_size": args.input_size, "epochs": args.epochs, "seed": args.seed}
    data.update({k: v for k, v in flags.items() if v is not None})
    data["trained_on"] = {"real": [str(p) for p in args.real], "fake": [str(p) for p in args.fake]}
    config = config_from_dict(DetectorConfig, data, args.config)
    real = load_image_folders(args.real, args.max_images, config.seed)
    fake = load_image_folders(args.fake, args.max_images, config.seed)
    detector = train_detector(config, real, fake, args.calibration_fraction)
    detector.save(args.out)
    print(f"{config.method} detector trained on {len(real)} real + {len(fake)} synthetic images: {args.out}")
    print(f"operating point: {detector.config.operating_point}")
    return 0


def cmd_detect_eval(args) -> int:
    from .detect.detector import load_image_folders, resolve_detector
    from .detect.evaluate import robustness_table
    from .detect.perturb import PERTURBATIONS

    detector = resolve_detector(args.detector)
    names = args.perturb or list(PERTURBATIONS)
    unknown = sorted(set(names) - set(PERTURBATIONS))
    if unknown:
        raise InputError(None, f"unknown perturbation(s) {', '.join(unknown)}", f"known: {', '.join(PERTURBATIONS)}")
    real = load_image_folders(args.real, args.max_images, args.seed)
    fake = load_image_folders(args.fake, args.max_images, args.seed)
    table = robustness_table(detector, real, fake, names, args.seed)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    config = detector.config
    print(f"{config.method} detector; {len(real)} real, {len(fake)} synthetic; {config.operating_point}")
    print(f"{'perturbation':<14}{'AUC':>8}{'acc':>8}{'TPR@1%':>8}{'F1':>8}")
    for name, row in table.items():
        print(f"{name:<14}{row['auc']:8.4f}{row['accuracy']:8.4f}{row['tpr@1%fpr']:8.4f}{row['f1']:8.4f}")
    return 0


def cmd_detect_scan(args) -> int:
    from collections import Counter

    from .detect.detector import resolve_detector
    from .detect.scan import scan_folder

    detector = resolve_detector(args.detector)
    rows = scan_folder(detector, args.folder, args.out, recursive=not args.no_recursive)
    counts = Counter(row["status"] for row in rows)
    verdicts = Counter(row["verdict"] for row in rows if row["status"] == "ok")
    print(f"{len(rows)} files scanned -> {args.out}")
    print(f"operating point: {detector.config.operating_point}")
    print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("verdict: " + (", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "none"))
    return 0


def cmd_verify(args) -> int:
    from .detect.detector import resolve_detector, shipped_detector_or_none
    from .detect.verify import verify_file

    detector = resolve_detector(args.detector) if args.detector else shipped_detector_or_none()
    result = verify_file(args.file, detector)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"file: {result['file']} ({result['width']}x{result['height']})")
    record = result["provenance"]
    if record is None:
        print("provenance: none" + (f" ({result['provenance_error']})" if "provenance_error" in result else ""))
    else:
        print(f"provenance: synthetic={record['synthetic']} model={record['model']} created={record['created']}")
        print(f"  watermark declared: {record['watermark']}")
    mark = result["watermark"]
    if "error" in mark:
        print(f"watermark ({mark['scheme']}): {mark['error']}")
    else:
        found = f"payload {mark['payload']}" if mark["valid"] else "no valid payload"
        line = f"watermark ({mark['scheme']}): {found}"
        if "bit_accuracy" in mark:
            line += f", bit accuracy {mark['bit_accuracy']:.3f} vs the record, matches record: {mark['matches_record']}"
        print(line)
    detector_result = result["detector"]
    if detector_result is None:
        print("detector: none installed (pass --detector DIR)")
    elif "error" in detector_result:
        print(f"detector ({detector_result['method']}): {detector_result['error']}")
    else:
        print(
            f"detector ({detector_result['method']}): score {detector_result['score']:.4f} -> "
            f"{detector_result['verdict']} [{detector_result['operating_point']}]"
        )
    print(f"summary: {result['summary']}")
    return 0


# evaluate and baselines ---------------------------------------------------------------------------------------


def cmd_evaluate(args) -> int:
    from .evaluate.evaluation import evaluate_folders
    from .evaluate.report import format_table

    features = [f.strip() for f in args.features.split(",") if f.strip()]
    results = evaluate_folders(
        args.real, args.fake, args.out, features=features, pairs=args.pairs, layouts=args.layouts,
        train=args.train, strict=args.strict, size=args.size, segmenter=args.segmenter,
        domain_encoder=args.domain_encoder, inception_weights=args.inception_weights,
        kid_subsets=args.kid_subsets, memorisation_quantile=args.memorisation_quantile, seed=args.seed,
        command="terrasynth " + " ".join(sys.argv[1:]),
    )
    print(format_table(results["rows"], results["ratios"]))
    for note in results["notes"]:
        print(f"note: {note}")
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.html'}")
    return 0


def cmd_train_pix2pix(args) -> int:
    from .train.pix2pix import Pix2PixTrainConfig, train_pix2pix

    config = _load_or_default(
        Pix2PixTrainConfig,
        args.config,
        {
            "paired_roots": tuple(args.paired) or None,
            "output_dir": args.out,
            "max_steps": args.max_steps,
            "batch_size": args.batch_size,
            "crop": args.crop,
            "checkpoint_every": args.checkpoint_every,
        },
    )
    print(train_pix2pix(config, resume=args.resume, progress=not args.quiet))
    return 0


def cmd_train_recognition(args) -> int:
    from .train.recognition import train_domain_encoder, train_layout_segmenter
    from .train.supervised import SupervisedTrainConfig

    defaults = {"train-domain": {"steps": 600, "batch_size": 16}, "train-segmenter": {"steps": 1500, "batch_size": 8,
                                                                                     "crop": 128}}[args.command]
    flags = {"steps": args.steps, "batch_size": args.batch_size, "crop": args.crop, "seed": args.seed}
    config = _load_or_default(SupervisedTrainConfig, None, {**defaults, **{k: v for k, v in flags.items() if v}})
    if args.command == "train-domain":
        splits = (args.train_split, args.val_split)
        result = train_domain_encoder(args.scenes, args.out, args.size, config, args.limit, not args.quiet, splits)
    else:
        splits = (args.train_split, args.val_split)
        result = train_layout_segmenter(args.paired, args.out, args.size, config, args.limit, not args.quiet, splits)
    print(json.dumps(result, indent=2))
    return 0


# utility ------------------------------------------------------------------------------------------------------


def cmd_utility(args) -> int:
    import dataclasses

    from .utility.experiments import ClassificationStudyConfig, SegmentationStudyConfig
    from .utility.study import parse_list, parse_shots, quick_config, run_study

    task = args.utility_command
    if args.quick:
        config = quick_config(task)
    else:
        config = ClassificationStudyConfig() if task == "classify" else SegmentationStudyConfig()
    changes: dict = {}
    if args.shots:
        changes["shots"] = parse_shots(args.shots)
    if args.ratio:
        changes["ratios"] = parse_list(args.ratio, float, "--ratio")
    if args.conditions:
        changes["conditions"] = parse_list(args.conditions, str, "--conditions")
    if task == "classify" and args.learners:
        changes["learners"] = parse_list(args.learners, str, "--learners")
    flags = {"seeds": args.seeds, "steps": args.steps, "batch_size": args.batch_size, "size": args.size,
             "eval_split": args.eval_split, "generation_steps": args.generation_steps,
             "generation_size": getattr(args, "generation_size", None)}
    changes.update({k: v for k, v in flags.items() if v is not None})
    try:
        config = dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as error:
        raise InputError(None, f"invalid utility settings: {error}") from None
    report = run_study(task, args.real, args.generator, args.out, config, progress=not args.quiet,
                       echo=(lambda line: None) if args.quiet else print)
    print(report["table"])
    print(f"{report['runs']} runs in {args.out}/runs; tables: {args.out}/summary.md, {args.out}/summary.csv; "
          f"plot: {report['plot']}")
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
    generate.add_argument(
        "--no-watermark", action="store_true", help="no invisible watermark (recorded in the metadata as 'none')"
    )
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

    detect = commands.add_parser("detect", help="real-vs-synthetic detector: train, evaluate, scan a folder")
    detect_commands = detect.add_subparsers(dest="detect_command", required=True)
    dtrain = detect_commands.add_parser("train", help="train a detector (spectral or CNN) on real and synthetic tiles")
    dtrain.add_argument("--method", choices=["spectral", "cnn"], help="default spectral")
    dtrain.add_argument("--real", action="append", required=True, help="folder of real tiles (repeatable)")
    dtrain.add_argument("--fake", action="append", required=True, help="folder of synthetic tiles (repeatable)")
    dtrain.add_argument("--out", required=True, help="detector folder to write")
    dtrain.add_argument("--config", help="DetectorConfig JSON (flags override it)")
    dtrain.add_argument("--input-size", type=int, help="tile size in pixels (default 64)")
    dtrain.add_argument("--epochs", type=int, help="CNN epochs")
    dtrain.add_argument("--max-images", type=int, help="at most this many images per class (seeded sample)")
    dtrain.add_argument(
        "--calibration-fraction", type=float, default=0.2, help="share held back to set the 1%% FPR operating point"
    )
    dtrain.add_argument("--seed", type=int)
    dtrain.set_defaults(func=cmd_detect_train)
    deval = detect_commands.add_parser("eval", help="AUC, accuracy, TPR at 1%% FPR, F1, clean and perturbed")
    deval.add_argument("--detector", default="default", help="detector folder or shipped name (spectral, cnn)")
    deval.add_argument("--real", action="append", required=True, help="held-out real tiles (repeatable)")
    deval.add_argument("--fake", action="append", required=True, help="held-out synthetic tiles (repeatable)")
    deval.add_argument("--perturb", action="append", help="perturbation name (repeatable; default all)")
    deval.add_argument("--max-images", type=int)
    deval.add_argument("--seed", type=int, default=0)
    deval.add_argument("--json", action="store_true")
    deval.set_defaults(func=cmd_detect_eval)
    dscan = detect_commands.add_parser("scan", help="score every file in a folder; write a CSV with verdicts")
    dscan.add_argument("folder")
    dscan.add_argument("--detector", default="default", help="detector folder or shipped name (spectral, cnn)")
    dscan.add_argument("--out", required=True, help="CSV to write (file,status,score,verdict,threshold,detail)")
    dscan.add_argument("--no-recursive", action="store_true", help="only the folder's own files")
    dscan.set_defaults(func=cmd_detect_scan)

    verify = commands.add_parser("verify", help="provenance metadata, watermark and detector score of one file")
    verify.add_argument("file")
    verify.add_argument("--detector", help="detector folder or shipped name (default: the shipped one, if any)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

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
    pix2pix.add_argument("--resume", help="'latest' or a checkpoint folder")
    pix2pix.set_defaults(func=cmd_train_pix2pix)

    for name, helptext in (("train-domain", "train the domain encoder (scene classifier) for --features domain"),
                           ("train-segmenter", "train the layout-fidelity segmenter on real paired tiles")):
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

    utility = commands.add_parser("utility", help="does synthetic data help? few-shot real vs real + synthetic grids")
    utility_commands = utility.add_subparsers(dest="utility_command", required=True)
    for name, helptext in (("classify", "scene classification (a folder per class)"),
                           ("segment", "land-cover segmentation (paired tiles; synthetic images from real layouts)")):
        sub = utility_commands.add_parser(name, help=helptext, parents=[common])
        sub.add_argument("--real", required=True, help="real data: scene folder (classify) or paired tiles (segment)")
        sub.add_argument(
            "--generator", required=True,
            help="model folder or shipped name (images generated into OUT/synthetic), or a folder of synthetic "
            "images: a class-per-folder tree (classify) or <layout id>-000.png files (segment)",
        )
        sub.add_argument("--out", required=True, help="study folder (runs/, summary.md/.csv/.json, curves.png)")
        sub.add_argument("--shots", help="real examples per class (pairs for segment), e.g. 5,10,25,50,all")
        sub.add_argument("--seeds", type=int, help="seeds per cell (default 3)")
        sub.add_argument("--ratio", help="synthetic-to-real ratio(s), e.g. 1 or 0.5,1,4 (default 1)")
        sub.add_argument("--conditions", help="subset of real,real+synthetic,synthetic,bridged")
        if name == "classify":
            sub.add_argument("--learners", help="effnet,small_cnn (default both)")
        sub.add_argument("--steps", type=int, help="training steps per run (default 300)")
        sub.add_argument("--batch-size", type=int)
        sub.add_argument("--size", type=int, help="image size in memory (default 128; 256 for full size)")
        sub.add_argument("--eval-split", choices=["val", "test"], help="real split scored (default test)")
        sub.add_argument("--generation-steps", type=int, help="sampling steps of a model generator (default 20)")
        if name == "classify":
            sub.add_argument("--generation-size", type=int, help="pixels of generated scenes (default 256)")
        sub.add_argument("--quick", action="store_true", help="a small grid for a first look (flags override it)")
        sub.set_defaults(func=cmd_utility)
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
