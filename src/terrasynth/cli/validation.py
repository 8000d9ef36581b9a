"""One validation step at each command's boundary, before any model loads, any sample is drawn or any file is
written.

``validate(args)`` runs on every parsed command line (``terrasynth.cli.main`` calls it before the command). It
applies two kinds of check, and raises an ``InputError`` (one line, exit 2) naming the input, the problem and the
fix at the first failure:

* rules by option name, shared by every command (so a new command is checked as soon as it has the usual
  options): numbers finite and in range, seeds in 0..2**32-1, input files and folders readable, ``--config`` a
  readable file, model and detector folders with intact safetensors;
* a checker per command (``CHECKS``) for what only that command knows: what ``--out`` is (a folder or a file),
  layout sizes, the GeoJSON grid and its CRS, C2PA credentials, existing outputs, a study's database URL.

Nothing here writes a file: writability is tested with an unnamed temporary file (``O_TMPFILE``), which never
appears in the folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import InputError

MAX_SEED = 2**32 - 1
# generate refuses layouts over this many pixels unless --max-pixels raises it: 2048 × 2048 passes, 4096 × 4096 not.
DEFAULT_MAX_PIXELS = 2048 * 2048
WATERMARK_MIN_SIDE = 16  # the ts-sync-v1 mark's block; images under 128 px keep that scheme
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")

# Integer options (argparse dest) that count something: at least 1.
POSITIVE_INTS = {
    "n",
    "per_layout",
    "steps",
    "max_steps",
    "batch_size",
    "epochs",
    "max_images",
    "input_size",
    "size",
    "height",
    "width",
    "num_class_images",
    "rank",
    "resolution",
    "gradient_accumulation_steps",
    "images_per_rater",
    "kid_subsets",
    "limit",
    "seeds",
    "generation_steps",
    "generation_size",
    "crop",
    "sampling_steps",
    "mean_prior_size",
    "mean_prior_neighbours",
    "max_pixels",
}
# Integer options where 0 means "never" or "none".
NON_NEGATIVE_INTS = {"checkpoint_every", "validate_every", "keep_checkpoints"}
# Integer options with their own range: (low, high), both inclusive.
INT_RANGES = {"seed": (0, MAX_SEED), "port": (0, 65535), "fake_jpeg": (1, 100)}
# Float options: (low, high, low inclusive, high inclusive); None is unbounded.
FLOAT_RANGES = {
    "guidance": (0.0, None, True, True),
    "guidance_scale": (0.0, None, True, True),
    "guidance_rescale": (0.0, 1.0, True, True),
    "strength": (0.0, 1.0, False, True),
    "gsd": (0.0, None, False, True),
    "learning_rate": (0.0, None, False, True),
    "calibration_fraction": (0.0, 1.0, False, False),
    "memorisation_quantile": (0.0, 1.0, False, False),
    "rare_crops": (0.0, 1.0, True, True),
}
# Options naming an input file, or input folders (one or a repeatable list).
INPUT_FILES = {
    "config",
    "class_table",
    "class_map",
    "init_image",
    "inpaint_mask",
    "inception_weights",
    "file",
    "image",
}
INPUT_FOLDERS = {
    "real",
    "fake",
    "paired",
    "scenes",
    "data",
    "layouts",
    "train",
    "class_data",
    "mean_prior",
}
# Options naming a folder of weights (a path, where a name is not a shipped one).
WEIGHT_FOLDERS = {"autoencoder", "init_from", "vae", "segmenter", "domain_encoder"}


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def command_path(args: argparse.Namespace) -> str:
    """``generate``, ``detect scan``, ``study serve``...: the words that name the command."""
    words = [args.command]
    for sub in ("detect_command", "study_command", "utility_command"):
        value = getattr(args, sub, None)
        if value:
            words.append(value)
    return " ".join(words)


# --------------------------------------------------------------------------------------------------------------
# Small reusable checks


def check_int(value: int | None, name: str, low: int | None = None, high: int | None = None) -> None:
    if value is None:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            expected = f"at least {low}"
        elif low is None:
            expected = f"at most {high}"
        else:
            expected = f"from {low} to {high}"
        raise InputError(None, f"{name} {value}: must be {expected}")


def check_float(
    value: float | None,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise InputError(None, f"{name} {value}: not a finite number", "give a number, not nan or inf")
    below = low is not None and (value < low if low_inclusive else value <= low)
    above = high is not None and (value > high if high_inclusive else value >= high)
    if below or above:
        left = "" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
        right = "" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
        if low is not None and high is not None:
            expected = f"in {left}, {right}"
        elif low is not None:
            expected = f"{'at least' if low_inclusive else 'greater than'} {low:g}"
        else:
            expected = f"{'at most' if high_inclusive else 'less than'} {high:g}"
        raise InputError(None, f"{name} {value:g}: must be {expected}")


def check_seed(seed: int | None, count: int = 1, name: str = "--seed") -> None:
    """A seed numpy and torch both take: 0..2**32-1, the last of ``count`` consecutive seeds included."""
    if seed is None:
        return
    if seed < 0 or seed + max(count, 1) - 1 > MAX_SEED:
        extra = f" (with {count} images, up to seed {seed + count - 1})" if count > 1 and seed >= 0 else ""
        raise InputError(None, f"{name} {seed}: must be from 0 to {MAX_SEED}{extra}", "give a seed in that range")


def input_file(path: str | os.PathLike, name: str, label: str = "file") -> Path:
    """A readable file; errors read ``PATH: <label> not found (NAME)``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(path, f"{label} not found", name)
    if path.is_dir():
        raise InputError(path, "a folder, where a file is wanted", name)
    if not os.access(path, os.R_OK):
        raise InputError(path, f"cannot read the {label}", f"{name}: check its permissions")
    return path


def input_folder(path: str | os.PathLike, name: str, label: str = "folder") -> Path:
    """A readable folder; errors read ``PATH: <label> not found (NAME)``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(path, f"{label} not found", name)
    if not path.is_dir():
        raise InputError(path, "a file, where a folder is wanted", name)
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(path, f"cannot read the {label}", f"{name}: check its permissions")
    return path


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def _check_writable_folder(folder: Path, path: Path, name: str) -> None:
    """Can a file be created in ``folder``? Tried with an unnamed temporary file, so nothing appears there."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(
            path, f"{name}: cannot write in {folder} ({error.strerror or error})", "choose a folder you can write to"
        ) from None


def output_folder(path: str | os.PathLike, name: str = "--out") -> Path:
    """A folder a command may create or write into: not an existing file, under a writable folder."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(path, f"{name}: an existing file, where an output folder is wanted", "choose a folder path")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise InputError(path, f"{name}: {base} is a file, so no folder can be made under it", "choose another path")
    _check_writable_folder(base, path, name)
    return path


def output_file(path: str | os.PathLike, name: str = "--out", suffixes: Iterable[str] = ()) -> Path:
    """A file a command may write: not an existing folder, with an existing, writable parent folder."""
    path = Path(path).expanduser()
    suffixes = tuple(suffixes)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(path, f"{name} must end in {' or '.join(suffixes)}", f"e.g. {name} out{suffixes[0]}")
    if path.is_dir():
        raise InputError(path, f"{name}: an existing folder, where an output file is wanted", "give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(path, f"{name}: the folder {parent} does not exist", "create it first")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(path, f"{name}: cannot overwrite the file", "check its permissions")
    _check_writable_folder(parent, path, name)
    return path


def check_safetensors(path: Path) -> None:
    """An intact safetensors file: an 8-byte header length, a JSON header, and exactly the bytes it describes.
    A truncated or corrupted file is refused here instead of as a loader's traceback."""
    problem = None
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(8)
            if len(head) < 8:
                problem = f"{size} bytes, too short for a header"
            else:
                (length,) = struct.unpack("<Q", head)
                if length > size - 8 or length > 100_000_000:
                    problem = f"header length {length} exceeds the file ({size} bytes)"
                else:
                    header = json.loads(file.read(length))
                    ends = [
                        int(entry["data_offsets"][1])
                        for key, entry in header.items()
                        if key != "__metadata__" and isinstance(entry, dict)
                    ]
                    expected = 8 + length + max(ends, default=0)
                    if expected != size:
                        problem = f"{size} bytes where its header describes {expected}"
    except OSError as error:
        problem = f"cannot read it ({error.strerror or error})"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        problem = "its header is not valid"
    if problem:
        raise InputError(path, f"corrupted or truncated weights: {problem}", "copy or export the model again")


def check_weights_folder(path: str | os.PathLike, name: str, label: str = "folder") -> Path:
    """A folder of weights whose every safetensors file is intact."""
    folder = input_folder(path, name, label)
    for weights in sorted(folder.rglob("*.safetensors")):
        check_safetensors(weights)
    return folder


def check_model(name_or_path: str, name: str = "--model") -> Path:
    """A shipped model name or a model folder, with intact weights."""
    from ..models.registry import SHIPPED_MODELS, resolve_model_path

    path = Path(name_or_path).expanduser()
    if str(name_or_path) not in SHIPPED_MODELS and path.exists() and not path.is_dir():
        raise InputError(path, f"{name}: a model is a folder, not a file", "pass the folder that holds its config")
    folder = resolve_model_path(name_or_path)
    return check_weights_folder(folder, name)


def check_detector(name_or_path: str | None, name: str = "--detector") -> None:
    if name_or_path is None:
        return
    from ..detect.detector import CONFIG_NAME, SHIPPED_DETECTORS

    if str(name_or_path) in (*SHIPPED_DETECTORS, "default"):
        return
    path = Path(name_or_path).expanduser()
    if not (path / CONFIG_NAME).is_file():
        raise InputError(
            path, f"not a detector folder (no {CONFIG_NAME})", f"{name}: a detector folder or probe, spectral, cnn"
        )
    check_weights_folder(path, name)


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header only."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio
        from rasterio.errors import RasterioIOError

        try:
            with rasterio.open(path) as source:
                return source.height, source.width
        except RasterioIOError as error:
            raise InputError(path, f"not a readable GeoTIFF ({error})") from None
    from PIL import Image, UnidentifiedImageError

    # the header alone is read, so Pillow's decompression-bomb guard (which refuses to open, not to decode) is lifted
    # here: the caller compares the size with its own limit and says so in one line
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(path, f"not a readable image ({error})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def check_size(
    height: int, width: int, minimum: int, maximum_pixels: int, what: str, needs: str, thing: str = "layout"
) -> None:
    if min(height, width) < minimum:
        raise InputError(
            None, f"{what} is {width}×{height}, below the {minimum} px minimum side ({needs})", f"give a larger {thing}"
        )
    if height * width > maximum_pixels:
        raise InputError(
            None,
            f"{what} is {width}×{height} = {height * width:,} pixels, over --max-pixels {maximum_pixels:,}",
            f"give a smaller {thing}, or raise --max-pixels if this size is intended",
        )


def check_c2pa_credentials(cert: str | None, key: str | None) -> None:
    """The C2PA certificate and key as c2pa will want them, named now rather than after sampling."""
    import os as _os

    from ..generate.content_credentials import CERT_ENV, KEY_ENV

    cert = cert or _os.environ.get(CERT_ENV) or None
    key = key or _os.environ.get(KEY_ENV) or None
    if cert is None and key is None:
        return
    if cert is None or key is None:
        given, missing = ("--c2pa-cert", "--c2pa-key") if cert else ("--c2pa-key", "--c2pa-cert")
        raise InputError(None, f"{given} needs {missing} too", f"pass both, or set {CERT_ENV} and {KEY_ENV}")
    cert_path = input_file(cert, "--c2pa-cert", "C2PA certificate chain file")
    key_path = input_file(key, "--c2pa-key", "C2PA private key file")
    key_text = key_path.read_bytes()
    for kind, label in ((b"EC PRIVATE KEY", "a SEC1 EC key"), (b"RSA PRIVATE KEY", "a PKCS#1 RSA key")):
        if b"-----BEGIN " + kind in key_text:
            raise InputError(
                key_path,
                f"--c2pa-key is {label}; C2PA signing needs a PKCS#8 key",
                f"convert it: openssl pkcs8 -topk8 -nocrypt -in {key_path} -out key-pkcs8.pem",
            )
    if b"-----BEGIN ENCRYPTED PRIVATE KEY" in key_text:
        raise InputError(key_path, "--c2pa-key is encrypted", "give an unencrypted PKCS#8 PEM key")
    try:
        from cryptography import x509
    except ImportError:
        return  # content_credentials names the missing package
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except ValueError:
        raise InputError(
            cert_path, "--c2pa-cert is not a PEM certificate chain", "PEM certificates, the signing one first"
        ) from None
    first = chain[0]
    if first.issuer == first.subject:
        raise InputError(
            cert_path,
            "--c2pa-cert is self-signed; C2PA refuses self-signed signing certificates",
            "sign with an end-entity certificate issued by a CA, the chain listing it first and then the CA's",
        )
    try:
        constraints = first.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise InputError(
                cert_path, "--c2pa-cert's first certificate is a CA", "put the signing (end-entity) certificate first"
            )
    except x509.ExtensionNotFound:
        pass
    from ..generate.content_credentials import SignerConfig, load_credentials

    load_credentials(SignerConfig(cert_path, key_path))  # parses both and checks that they belong together


def check_database_url(url: str, must_exist: bool) -> None:
    """A SQLAlchemy URL; a SQLite file must exist (``must_exist``) or have a writable folder."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        return  # the study command names the missing extra
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise InputError(None, f"--db {url!r} is not a database URL", "e.g. sqlite:///study.db") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if must_exist:
        if not path.is_file():
            raise InputError(path, "study database not found", "--db: give the URL the study was served with")
    elif path.is_dir():
        raise InputError(path, "a folder, where a SQLite file is wanted", "--db: e.g. sqlite:///study.db")
    elif not path.exists():
        output_file(path, "--db")


# --------------------------------------------------------------------------------------------------------------
# Rules by option name, for every command


def _check_by_name(args: argparse.Namespace) -> None:
    values = vars(args)
    for dest, value in values.items():
        if value is None or isinstance(value, bool) or dest == "func":
            continue
        name = flag(dest)
        if isinstance(value, float):
            low, high, low_inclusive, high_inclusive = FLOAT_RANGES.get(dest, (None, None, True, True))
            check_float(value, name, low, high, low_inclusive, high_inclusive)
        elif isinstance(value, int):
            if dest == "seed":
                check_seed(value, values.get("n") or 1)
            elif dest in INT_RANGES:
                check_int(value, name, *INT_RANGES[dest])
            elif dest in POSITIVE_INTS:
                check_int(value, name, 1)
            elif dest in NON_NEGATIVE_INTS:
                check_int(value, name, 0)
        elif dest in INPUT_FILES and isinstance(value, str):
            input_file(value, name if dest not in ("file", "image") else dest.upper())
        elif dest in INPUT_FOLDERS:
            for item in value if isinstance(value, list) else [value]:
                input_folder(item, name)
        elif dest in WEIGHT_FOLDERS and isinstance(value, str):
            check_weights_folder(value, name)


def _out_from_config(args: argparse.Namespace) -> str | None:
    """``--out``, or the ``output_dir`` of ``--config`` when the flag is not given."""
    if getattr(args, "out", None) is not None:
        return args.out
    if getattr(args, "config", None):
        from ..files import read_json

        data = read_json(args.config)
        if isinstance(data, dict) and isinstance(data.get("output_dir"), str):
            return data["output_dir"]
    return None


def _check_resume(args: argparse.Namespace, out: str | None) -> None:
    """``--resume`` a checkpoint folder or ``latest``; without it, a run folder holding checkpoints is refused
    (as ``TrainingRun.resume`` would refuse it, but before any data or model loads)."""
    resume = getattr(args, "resume", None)
    if resume is None and out is not None:
        from ..train.checkpoints import list_checkpoints

        if list_checkpoints(out):
            raise InputError(
                out, "run folder already holds checkpoints", "pass --resume latest to continue that run, or a new --out"
            )
    if resume is not None and resume != "latest":
        folder = input_folder(resume, "--resume")
        if not (folder / "state.json").is_file():
            raise InputError(folder, "--resume: not a complete checkpoint folder (no state.json)", "pass latest")
        check_weights_folder(folder, "--resume")


# --------------------------------------------------------------------------------------------------------------
# One checker per command, for what only it knows

CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {}


def checks(*commands: str):
    def register(function):
        for command in commands:
            CHECKS[command] = function
        return function

    return register


def _geojson_grid(args: argparse.Namespace) -> None:
    """``--grid``'s numbers, ``--grid-crs``, and at least one feature of the GeoJSON inside the grid."""
    layout = args.layout
    is_geojson = layout is not None and Path(layout).suffix.lower() in (".geojson", ".json")
    if args.grid_crs is not None:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            CRS.from_user_input(args.grid_crs)
        except (CRSError, ValueError):
            raise InputError(None, f"--grid-crs {args.grid_crs!r} is not a CRS", "e.g. EPSG:32633") from None
    if args.grid is None:
        return
    try:
        left, bottom, right, top = (float(v) for v in args.grid.split(","))
    except ValueError:
        raise InputError(None, f"--grid must be 'left,bottom,right,top', got {args.grid!r}") from None
    for value in (left, bottom, right, top):
        check_float(value, "--grid")
    if not (right > left and top > bottom):
        raise InputError(None, f"--grid must have right > left and top > bottom, got {args.grid!r}")
    if not is_geojson:
        return
    from ..data.layouts import features_bounds, read_geojson_features

    features, geojson_crs = read_geojson_features(layout)
    inside = 0
    for feature in features:
        f_left, f_bottom, f_right, f_top = features_bounds([feature])
        if f_left <= right and f_right >= left and f_bottom <= top and f_top >= bottom:
            inside += 1
    if inside == 0:
        f_left, f_bottom, f_right, f_top = features_bounds(features)
        box = f"{f_left:g},{f_bottom:g},{f_right:g},{f_top:g}"
        if args.grid_crs is None:
            raise InputError(
                layout,
                f"no feature falls inside --grid {args.grid} (features span {box}); without --grid-crs the grid is "
                f"read in the GeoJSON's CRS {geojson_crs}",
                "give --grid in the GeoJSON's CRS, or reproject the GeoJSON (ogr2ogr -t_srs) to the grid's CRS and "
                "pass --grid-crs",
            )
        raise InputError(layout, f"no feature falls inside --grid {args.grid} (features span {box})", "fix --grid")


def side_multiple(folder: Path) -> int:
    """The multiple an image side must be for the model's down-sampling (read from its configs; 1 if unknown)."""
    from ..models.stable_diffusion import is_stable_diffusion_model

    if is_stable_diffusion_model(folder):
        return 8
    try:
        down = 1
        vae = folder / "vae" / "config.json"
        if vae.is_file():
            down = 2 ** (len(json.loads(vae.read_text())["block_out_channels"]) - 1)
        unet = json.loads((folder / "unet" / "config.json").read_text())
        return down * 2 ** (len(unet["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return 1


def generated_stem(args: argparse.Namespace) -> str:
    """The file stem generate writes: the layout's, else ``generated`` (see generate.outputs.write_generated)."""
    return Path(args.layout).stem if args.layout else "generated"


def existing_outputs(out: Path, stem: str, count: int) -> list[Path]:
    """Files of a generate run into ``out`` with ``stem`` and ``count`` images that are already there."""
    if not out.is_dir():
        return []
    names = [f"{stem}-{i:03d}{suffix}" for i in range(count) for suffix in (".png", ".tif")]
    names.append(f"{stem}-grid.png")
    return [out / name for name in names if (out / name).exists()]


def _check_inpaint_mask(args: argparse.Namespace) -> None:
    """The mask readable, of the init image's size, neither empty nor full."""
    from ..generate.api import check_inpaint_mask, read_inpaint_mask

    mask = Path(args.inpaint_mask)
    if args.init_image is None:
        raise InputError(mask, "--inpaint-mask needs --init-image", "give the tile to inpaint with --init-image TILE")
    size = image_size(Path(args.init_image))
    check_inpaint_mask(read_inpaint_mask(mask), mask, size, args.init_image, args.height, args.width)


@checks("generate")
def _check_generate(args: argparse.Namespace) -> None:
    out = output_folder(args.out)
    if args.layout is not None:
        input_file(args.layout, "--layout")
    if args.inpaint_mask is not None:
        _check_inpaint_mask(args)
    _geojson_grid(args)
    check_c2pa_credentials(args.c2pa_cert, args.c2pa_key)
    model = check_model(args.model)
    multiple = side_multiple(model)
    minimum = max(multiple, 1 if args.no_watermark else WATERMARK_MIN_SIDE)
    needs = []
    if not args.no_watermark:
        needs.append(f"the watermark needs {WATERMARK_MIN_SIDE} px")
    if multiple > 1:
        needs.append(f"the model down-samples by {multiple}")
    max_pixels = getattr(args, "max_pixels", None) or DEFAULT_MAX_PIXELS
    size, thing = None, "layout"
    if args.layout is not None:
        if Path(args.layout).suffix.lower() in (".geojson", ".json"):
            size, what = (args.size, args.size), f"the GeoJSON layout at --size {args.size}"
        else:
            size, what = image_size(Path(args.layout)), f"the layout {args.layout}"
    elif args.init_image is not None:
        size, what, thing = image_size(Path(args.init_image)), f"the init image {args.init_image}", "init image"
    elif args.height is not None or args.width is not None:
        size, what = (args.height or args.width, args.width or args.height), "--height × --width"
    if size is not None:
        check_size(*size, minimum, max_pixels, what, " and ".join(needs) or "the smallest image written", thing)
    existing = existing_outputs(out, generated_stem(args), args.n)
    if existing and not getattr(args, "overwrite", False):
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise InputError(
            existing[0],
            f"already exists{more}: generate does not overwrite earlier images",
            "pass --overwrite to replace them, or choose another --out",
        )


@checks("synthesize")
def _check_synthesize(args: argparse.Namespace) -> None:
    """INPUT there, OUT creatable (it may hold an earlier run's items: synthesize resumes), the model intact. Each
    layout's size is checked as it is read, before the model loads (``synthesize_size_limits``)."""
    source = Path(args.input).expanduser()
    if not source.exists():
        raise InputError(source, "no such file or folder", "INPUT: a layouts folder, a paired-tiles dataset or a CSV")
    output_folder(args.out)
    check_c2pa_credentials(args.c2pa_cert, args.c2pa_key)
    check_model(args.model)


def synthesize_size_limits(args: argparse.Namespace) -> tuple[int, int, str]:
    """(minimum side, maximum pixels, why the minimum) for every layout of a ``synthesize`` run."""
    multiple = side_multiple(check_model(args.model))
    needs = [] if args.no_watermark else [f"the watermark needs {WATERMARK_MIN_SIDE} px"]
    if multiple > 1:
        needs.append(f"the model down-samples by {multiple}")
    minimum = max(multiple, 1 if args.no_watermark else WATERMARK_MIN_SIDE)
    return minimum, args.max_pixels, " and ".join(needs) or "the smallest image written"


@checks("info", "verify")
def _check_file_command(args: argparse.Namespace) -> None:
    check_detector(getattr(args, "detector", None))


@checks("demo")
def _check_demo(args: argparse.Namespace) -> None:
    output_folder(args.out)


@checks("train", "train-autoencoder", "train-pix2pix")
def _check_train(args: argparse.Namespace) -> None:
    out = _out_from_config(args)
    if out is not None:
        output_folder(out)
    _check_resume(args, out)


@checks("train-domain", "train-segmenter")
def _check_train_recognition(args: argparse.Namespace) -> None:
    output_folder(args.out)


@checks("export")
def _check_export(args: argparse.Namespace) -> None:
    settings = args.mean_prior_neighbours is not None or args.mean_prior_start is not None
    if settings and args.mean_prior is None and args.model is None:
        raise InputError(None, "--mean-prior-neighbours and --mean-prior-start need --mean-prior DATA")
    output_folder(args.out)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise InputError(
            out,
            "already holds files: export does not replace a model folder",
            "pass --overwrite to replace it, or choose another --out",
        )
    if args.model is not None:
        check_model(args.model)
    if args.run is not None:
        input_folder(args.run, "--run")
        input_file(Path(args.run) / "config.json", "--run")
        if args.checkpoint != "latest":
            folder = input_folder(args.checkpoint, "--checkpoint")
            check_weights_folder(folder, "--checkpoint")
        else:
            from ..train.checkpoints import list_checkpoints

            found = list_checkpoints(args.run)
            if not found:
                raise InputError(args.run, "--run has no complete checkpoint to export yet", "train it further")
            check_weights_folder(found[-1], "--run")


@checks("finetune")
def _check_finetune(args: argparse.Namespace) -> None:
    out = _out_from_config(args)
    if out is not None:
        output_folder(out)
    for name in ("base", "controlnet"):
        value = getattr(args, name)
        if value is not None and (value.startswith((".", "/", "~")) or Path(value).expanduser().exists()):
            check_weights_folder(value, flag(name), f"{name} model folder")
    _check_resume(args, out)


@checks("evaluate")
def _check_evaluate(args: argparse.Namespace) -> None:
    from ..evaluate.evaluation import MIN_PER_SET

    output_folder(args.out)
    known = ("effnet", "domain", "inception")
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    unknown = [f for f in features if f not in known]
    if not features or unknown:
        raise InputError(
            None, f"--features {args.features!r}: unknown {', '.join(unknown) or 'empty'}", "known: " + ", ".join(known)
        )
    real, fake = count_images(Path(args.real)), count_images(Path(args.fake))
    if real < 2 * MIN_PER_SET:
        raise InputError(
            args.real,
            f"--real has {real} image(s); the real-vs-real floor splits it in two halves of at least {MIN_PER_SET}",
            f"give at least {2 * MIN_PER_SET} images",
        )
    if fake < MIN_PER_SET:
        raise InputError(args.fake, f"--fake has {fake} image(s), under {MIN_PER_SET}", f"give at least {MIN_PER_SET}")


@checks("detect train")
def _check_detect_train(args: argparse.Namespace) -> None:
    output_folder(args.out)


@checks("detect calibrate")
def _check_detect_calibrate(args: argparse.Namespace) -> None:
    from .detect import MIN_CALIBRATION_IMAGES

    out = output_folder(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(out, "already exists", "pass --overwrite or choose another --out")
    total = sum(count_images(input_folder(folder, "--real")) for folder in args.real)
    if total < MIN_CALIBRATION_IMAGES:
        raise InputError(
            args.real[0],
            f"--real holds {total} image(s); calibration needs at least {MIN_CALIBRATION_IMAGES} genuine images",
            "add more known-genuine images of the imagery you will scan",
        )
    if args.max_images is not None and args.max_images < MIN_CALIBRATION_IMAGES:
        raise InputError(
            None, f"--max-images {args.max_images} is under {MIN_CALIBRATION_IMAGES}", "raise it or drop it"
        )
    check_detector(args.detector)
    if str(args.detector) in ("spectral", "cnn"):
        raise InputError(None, f"--detector {args.detector} has no calibrated verdicts", "use probe (the default)")
    if Path(args.detector).is_dir():
        from ..detect.detector import CONFIG_NAME
        from ..files import read_json

        config = read_json(Path(args.detector) / CONFIG_NAME)
        method = config.get("method") if isinstance(config, dict) else None
        if method != "probe":
            raise InputError(args.detector, f"a {method} detector has no calibrated verdicts", "use a probe detector")


@checks("detect eval")
def _check_detect_eval(args: argparse.Namespace) -> None:
    check_detector(args.detector)


@checks("detect scan")
def _check_detect_scan(args: argparse.Namespace) -> None:
    path = Path(args.folder).expanduser()
    if not path.exists():
        raise InputError(path, "no such file or folder", "FOLDER: give a folder of images or one image")
    output_file(args.out, "--out")
    check_detector(args.detector)


@checks("detect localize")
def _check_detect_localize(args: argparse.Namespace) -> None:
    output_file(args.out, "--out", (".png",))
    check_detector(args.detector)


@checks("study serve")
def _check_study_serve(args: argparse.Namespace) -> None:
    check_database_url(args.db, must_exist=False)


@checks("study report")
def _check_study_report(args: argparse.Namespace) -> None:
    output_folder(args.out)
    check_database_url(args.db, must_exist=True)
    for item in args.scores:
        path = item.rpartition("=")[2] if "=" in item else item
        input_file(path, "--scores", "scores file")


@checks("utility classify", "utility segment")
def _check_utility(args: argparse.Namespace) -> None:
    output_folder(args.out)
    from ..models.registry import SHIPPED_MODELS

    if args.generator not in SHIPPED_MODELS:
        folder = input_folder(args.generator, "--generator")
        check_weights_folder(folder, "--generator")


def validate(args: argparse.Namespace) -> None:
    """Every check of ``args``' command, before the command runs; the first failure raises ``InputError``."""
    _check_by_name(args)
    checker = CHECKS.get(command_path(args))
    if checker is not None:
        checker(args)


def add_generate_options(parser: argparse.ArgumentParser) -> None:
    """The options generate's boundary checks read: the size guard and the overwrite switch."""
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse layouts with more pixels than this (default: %(default)s, 2048×2048)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace images an earlier run wrote under the same names in --out (default: refuse)",
    )
