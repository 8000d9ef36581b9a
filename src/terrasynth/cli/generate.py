"""``terrasynth generate | info | demo``, and the layout/grid arguments of ``generate``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..generate.schedulers import DEFAULT_SCHEDULER, SCHEDULERS


def _parse_grid(text: str | None, crs: str | None, size: int, layout: str | None = None):
    """``--grid``/``--grid-crs`` → a TileGrid, or None for the GeoJSON features' own box. The grid's CRS
    defaults to the GeoJSON's; a ``--grid-crs`` that differs from it is refused (features are not
    reprojected)."""
    geojson_crs = None
    if layout is not None and Path(layout).suffix.lower() in (".geojson", ".json") and (text or crs):
        from ..data.layouts import read_geojson_features

        geojson_crs = read_geojson_features(layout)[1]
    if text is None:
        from ..data.layouts import same_crs

        if crs is not None and geojson_crs is not None and not same_crs(crs, geojson_crs):
            raise InputError(
                layout,
                f"GeoJSON CRS {geojson_crs} does not match --grid-crs {crs}",
                "reproject the features (e.g. ogr2ogr -t_srs) or drop --grid-crs",
            )
        return None
    from ..data.layouts import TileGrid

    try:
        left, bottom, right, top = (float(v) for v in text.split(","))
        return TileGrid((left, bottom, right, top), size, size, crs or geojson_crs or "EPSG:4326")
    except ValueError as error:
        raise InputError(
            None,
            f"--grid must be 'left,bottom,right,top' with right > left and top > bottom, got {text!r} ({error})",
        ) from None


def parse_guidance_interval(text: str | None) -> tuple[float, float] | None:
    from ..generate.pipeline import check_guidance_interval

    if text is None:
        return None
    try:
        return check_guidance_interval([float(v) for v in text.split(",")])
    except ValueError as error:
        raise InputError(None, f"--guidance-interval {text!r}: {error}", "give LOW,HIGH, e.g. 0.5,1") from None


def parse_guidance_rescale(value: float) -> float:
    from ..generate.pipeline import check_guidance_rescale

    try:
        return check_guidance_rescale(value)
    except ValueError as error:
        raise InputError(None, f"--guidance-rescale: {error}", "give a number from 0 (off) to 1") from None


def sampling_from(args):
    """The ``Sampling`` of the sampling flags ``add_sampling_arguments`` adds (checked here: exit 2 before any
    model loads)."""
    from ..generate.sampling import Sampling

    return Sampling(
        steps=args.steps,
        guidance_scale=args.guidance,
        scheduler=args.scheduler,
        guidance_interval=parse_guidance_interval(args.guidance_interval),
        guidance_rescale=parse_guidance_rescale(args.guidance_rescale),
        strength=args.strength,
        use_mean_prior=not args.no_mean_prior,
    )


def cmd_generate(args) -> int:
    from ..generate.content_credentials import signer_config_from

    signer = signer_config_from(args.c2pa_cert, args.c2pa_key)  # before the model: a bad certificate fails fast
    sampling = sampling_from(args)
    from ..generate.api import GenerationRequest, LayoutSpec, OutputOptions, generate_images

    layout = None
    if args.layout is not None:
        layout = LayoutSpec(
            args.layout,
            class_table=args.class_table,
            grid=_parse_grid(args.grid, args.grid_crs, args.size, args.layout),
            class_property=args.class_property,
            class_map=args.class_map,
            size=args.size,
        )
    request = GenerationRequest(args.prompt, layout, args.init_image, args.inpaint_mask, args.height, args.width)
    output = OutputOptions(args.out, watermark=not args.no_watermark, signer=signer, progress=not args.quiet)
    written = generate_images(args.model, request, sampling, output, seed=args.seed, count=args.n)
    for path in written:
        print(path)
    return 0


def cmd_synthesize(args) -> int:
    """Read and check every layout, then the model, then sample what is not yet on disk (see
    ``generate.synthesize``); under ``accelerate launch`` every process runs this and the main one prints."""
    from ..generate.content_credentials import signer_config_from

    signer = signer_config_from(args.c2pa_cert, args.c2pa_key)
    sampling = sampling_from(args)
    if sampling.strength is not None:
        raise InputError(None, "--strength needs an init image: synthesize draws from noise", "drop --strength")
    if args.batch_size < 1:
        raise InputError(None, f"--batch-size must be at least 1, got {args.batch_size}")
    from ..files import read_json
    from ..generate import synthesize as synth
    from .validation import synthesize_size_limits

    class_map = read_json(args.class_map) if args.class_map else None
    loaded = None
    table = synth.input_class_table(args.input, args.class_table, args.model)
    if table is None:  # a Stable Diffusion ControlNet: its classes come with the loaded model
        from ..generate.api import load_pipeline

        loaded = load_pipeline(args.model, sampling.scheduler)
        table = loaded.generator.layout_classes
        if table is None:
            raise InputError(args.model, "this model takes no layout", "synthesize needs a layout-conditioned model")
    entries, skipped = synth.read_layouts(
        args.input,
        table,
        split=args.split,
        size=args.size,
        class_property=args.class_property,
        class_map=class_map,
        skip_bad=args.skip_bad,
        size_limits=synthesize_size_limits(args),
    )
    class_swap = synth.read_class_swap(args.class_swap, table) if args.class_swap else None
    items = synth.plan_items(entries, args.per_layout, args.seed, args.prompt, tuple(args.augment), class_swap)
    result = synth.synthesize(
        loaded or args.model,
        items,
        args.out,
        sampling,
        batch_size=args.batch_size,
        watermark=not args.no_watermark,
        signer=signer,
        progress=not args.quiet,
        skipped=skipped,
    )
    if result.is_main_process:
        for source, problem in result.skipped:
            print(f"skipped {source}: {problem}", file=sys.stderr)
        kept = result.planned - result.written
        print(f"{result.written} images written, {kept} already there, {result.planned} in {result.out_dir}")
        print(
            f"{result.images_per_second:.3f} images/s ({result.written} in {result.sample_seconds:.1f} s on "
            f"{result.processes} process(es); model load {result.load_seconds:.1f} s apart)"
        )
    return 0


def cmd_info(args) -> int:
    from ..generate.provenance import describe

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
    from ..generate.demo import run_demo

    started = time.time()
    page = run_demo(args.out, steps=args.steps, progress=not args.quiet)
    print(f"demo written to {page} in {time.time() - started:.0f} s")
    return 0


def add_sampling_arguments(parser) -> None:
    """The sampling flags of ``generate`` and ``synthesize`` (``sampling_from`` reads them)."""
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own; 20 for SD)")
    parser.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the model's own; 7.5 for SD)"
    )
    parser.add_argument(
        "--guidance-interval",
        metavar="LOW,HIGH",
        help="guide only at noise levels LOW <= t/T <= HIGH (1 = pure noise); e.g. 0.5,1 guides where the layout "
        "is placed and leaves fine texture unguided",
    )
    parser.add_argument(
        "--guidance-rescale",
        type=float,
        default=0.0,
        metavar="PHI",
        help="rescale the guided prediction towards the conditional one's std (Lin et al. 2024), 0 to 1; "
        "counters over-saturation at high --guidance (default: %(default)s, off)",
    )
    parser.add_argument(
        "--scheduler",
        default=DEFAULT_SCHEDULER,
        choices=list(SCHEDULERS),
        help="sampler; dpm++sde, euler-a and ddpm add fresh noise at every step (default: %(default)s)",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="with --init-image: share of the sampler's steps redrawn, in (0, 1]; low keeps more of the image "
        "(default: 0.3; 1 with --inpaint-mask, drawing the region from noise)",
    )
    parser.add_argument(
        "--no-mean-prior",
        action="store_true",
        help="start from pure noise even if the model has a mean prior (its draw of each tile's global colour)",
    )


def add_commands(commands, common) -> None:
    generate = commands.add_parser("generate", help="make images from a layout and/or a prompt")
    generate.add_argument("--model", default="default", help="model folder or shipped model name (default)")
    generate.add_argument("--layout", help="mask PNG/GeoTIFF, colour-coded map image, or GeoJSON")
    generate.add_argument("--prompt", default="", help="text prompt (empty: unconditional on text)")
    generate.add_argument("--n", type=int, default=4, help="number of images")
    generate.add_argument("--seed", type=int, default=None, help="seed of the first image; image i uses seed+i")
    add_sampling_arguments(generate)
    generate.add_argument("--height", type=int, default=None, help="output height without a layout")
    generate.add_argument("--width", type=int, default=None, help="output width without a layout")
    generate.add_argument("--class-table", help="classes.json of the layout (default: the model's)")
    generate.add_argument("--grid", help="GeoJSON grid bounds 'left,bottom,right,top' (default: features' box)")
    generate.add_argument("--grid-crs", help="CRS of --grid (default: the GeoJSON's)")
    generate.add_argument("--size", type=int, default=256, help="GeoJSON raster size in pixels")
    generate.add_argument("--class-property", default="class", help="GeoJSON property holding the class")
    generate.add_argument("--class-map", help="JSON mapping GeoJSON class values to class names")
    generate.add_argument(
        "--init-image",
        help="start from this image (e.g. a real tile) instead of pure noise and redraw it (SDEdit; embedded models)",
    )
    generate.add_argument(
        "--inpaint-mask",
        metavar="MASK",
        help="with --init-image: redraw only where this PNG/TIFF mask (init image's size) is nonzero, to the "
        "--layout's classes; every other pixel stays the init image's, bit for bit",
    )
    generate.add_argument("--out", required=True, help="output folder")
    generate.add_argument(
        "--no-watermark", action="store_true", help="no invisible watermark (recorded in the metadata as 'none')"
    )
    generate.add_argument(
        "--c2pa-cert", help="sign C2PA Content Credentials with this PEM certificate chain (env TERRASYNTH_C2PA_CERT)"
    )
    generate.add_argument("--c2pa-key", help="PEM private key of --c2pa-cert (env TERRASYNTH_C2PA_KEY)")
    generate.set_defaults(func=cmd_generate)

    synthesize = commands.add_parser(
        "synthesize",
        help="a labelled synthetic dataset from many layouts (accelerate launch shards it over processes)",
        description="Images from every layout of INPUT, with the layouts as labels: OUT/images/, OUT/masks/, "
        "OUT/classes.json, OUT/index.csv. Resumable: items already in OUT are kept. Shard over processes, GPUs or "
        "machines with: accelerate launch --multi_gpu --num_processes N -m terrasynth.cli synthesize ... (on CPU "
        "too; docs/synthesize.md)",
    )
    synthesize.add_argument(
        "input",
        help="a folder of layouts (mask PNG/GeoTIFF, colour maps, GeoJSON), a paired-tiles dataset, or a CSV with "
        "columns layout,prompt",
    )
    synthesize.add_argument("--out", required=True, help="output dataset folder")
    synthesize.add_argument("--model", default="default", help="model folder or shipped model name (default)")
    synthesize.add_argument("--per-layout", type=int, default=1, metavar="K", help="images per layout (default: 1)")
    synthesize.add_argument("--prompt", help="one prompt for all (default: the CSV's, else built from the layout)")
    synthesize.add_argument(
        "--seed", type=int, default=0, help="base seed; item k of layout L uses a hash of (seed, L, k) (default: 0)"
    )
    synthesize.add_argument("--batch-size", type=int, default=8, help="images sampled together (default: 8)")
    synthesize.add_argument(
        "--augment",
        nargs="+",
        default=[],
        choices=["flip", "rot90"],
        help="also make flipped (horizontal, vertical) and/or rotated (90, 180, 270°) copies of each layout",
    )
    synthesize.add_argument("--class-swap", metavar="JSON", help='also a copy with classes swapped: {"from": "to"}')
    synthesize.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable layouts (listed in OUT/skipped.csv) instead of stopping before anything is written",
    )
    synthesize.add_argument("--split", default="all", help="the split of a paired-tiles INPUT (default: all)")
    synthesize.add_argument(
        "--max-pixels",
        type=int,
        default=2048 * 2048,
        help="refuse layouts with more pixels than this (default: %(default)s, 2048×2048)",
    )
    synthesize.add_argument("--class-table", help="classes.json of the layouts (default: the dataset's or model's)")
    synthesize.add_argument("--size", type=int, default=256, help="GeoJSON raster size in pixels")
    synthesize.add_argument("--class-property", default="class", help="GeoJSON property holding the class")
    synthesize.add_argument("--class-map", help="JSON mapping GeoJSON class values to class names")
    add_sampling_arguments(synthesize)
    synthesize.add_argument("--no-watermark", action="store_true", help="no invisible watermark")
    synthesize.add_argument("--c2pa-cert", help="sign C2PA Content Credentials with this PEM certificate chain")
    synthesize.add_argument("--c2pa-key", help="PEM private key of --c2pa-cert")
    synthesize.set_defaults(func=cmd_synthesize)

    info = commands.add_parser("info", help="show an image's provenance and georeference")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    demo = commands.add_parser("demo", help="generate from bundled layouts and prompts; write an HTML page")
    demo.add_argument("--out", default="terrasynth-demo")
    demo.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    demo.set_defaults(func=cmd_demo)
