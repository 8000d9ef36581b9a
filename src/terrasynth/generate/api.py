"""``generate_images``: the one call behind ``terrasynth generate``, for either kind of model."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import ClassTable
from ..data.images import GEOTIFF_SUFFIXES, _open_pil, read_image
from ..data.layouts import Layout, TileGrid, load_layout
from ..errors import InputError
from ..files import file_sha256, read_json
from ..models.embedded import model_fingerprint
from ..models.registry import SHIPPED_MODELS, resolve_model_path
from ..models.stable_diffusion import is_stable_diffusion_model
from .content_credentials import SignerConfig, load_credentials
from .outputs import provenance_records, write_contact_grid, write_generated
from .pipeline import LayoutToImagePipeline, prompts_and_seeds
from .pix2pix_generator import Pix2PixGenerator, is_pix2pix_model
from .sampling import Generator, LoadedGenerator, Sampling, check_sampling
from .schedulers import DEFAULT_SCHEDULER

log = logging.getLogger(__name__)


def load_pipeline(model: str | Path, scheduler: str = DEFAULT_SCHEDULER) -> LoadedGenerator:
    """(generator, model id, model sha256) for a shipped model name or a model folder: the embedded
    ``LayoutToImagePipeline``, a ``Pix2PixGenerator``, or a ``StableDiffusionGenerator`` (a diffusers folder, or
    LoRA / textual-inversion weights from ``terrasynth finetune``)."""
    if is_stable_diffusion_model(model):
        from .sd_pipeline import load_sd_generator

        return load_sd_generator(model, scheduler)
    path = resolve_model_path(model)
    if is_pix2pix_model(path):
        generator: Generator = Pix2PixGenerator.from_pretrained(path)
    else:
        generator = LayoutToImagePipeline.from_pretrained(path, scheduler=scheduler)
    model_id = str(model) if str(model) in SHIPPED_MODELS else str(path)
    return LoadedGenerator(generator, model_id, model_fingerprint(path))


@dataclasses.dataclass(frozen=True)
class LayoutSpec:
    """A layout file and how to read it (``load_layout``'s arguments); the class table defaults to the model's.
    ``class_map``: a JSON file mapping GeoJSON class values to class names, or that mapping."""

    path: str | Path
    class_table: str | Path | None = None
    grid: TileGrid | None = None
    class_property: str = "class"
    class_map: str | Path | dict | None = None
    size: int = 256

    def load(self, model_classes: ClassTable | None) -> Layout:
        """The layout in ``model_classes`` (InputError when the model takes none, or the table differs)."""
        table = ClassTable.from_json(self.class_table) if self.class_table else model_classes
        if table is None:
            raise InputError(self.path, "this model takes no layout", "generate from --prompt alone")
        if model_classes is not None and table.names != model_classes.names:
            raise InputError(self.class_table, f"classes {table.names} differ from the model's {model_classes.names}")
        class_map = read_json(self.class_map) if isinstance(self.class_map, (str, Path)) else self.class_map
        return load_layout(
            self.path, table, grid=self.grid, class_property=self.class_property, class_map=class_map, size=self.size
        )


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """What to draw: a prompt, a layout (a ``LayoutSpec`` to read with the model's classes, or a ``Layout``),
    and optionally an init image to redraw (SDEdit) with an inpainting mask; ``height``/``width`` without a
    layout."""

    prompt: str = ""
    layout: LayoutSpec | Layout | None = None
    init_image: str | Path | None = None
    inpaint_mask: str | Path | None = None
    height: int | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if self.inpaint_mask is not None and self.init_image is None:
            raise InputError(
                self.inpaint_mask,
                "--inpaint-mask needs --init-image",
                "give the tile to inpaint with --init-image TILE",
            )


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """Where and how images are written: ``out_dir/{stem}-NNN.png`` (or ``.tif`` on a georeferenced layout's
    grid) and ``{stem}-grid.png``; ``stem`` None: the layout file's name, else "generated". ``watermark=False``:
    no invisible watermark (recorded as "none"); ``signer``: signed C2PA Content Credentials."""

    out_dir: str | Path = "generated"
    stem: str | None = None
    watermark: bool = True
    signer: SignerConfig | None = None
    progress: bool = False


def generate_images(
    model: LoadedGenerator | str | Path,
    request: GenerationRequest,
    sampling: Sampling = Sampling(),
    output: OutputOptions = OutputOptions(),
    seed: int | None = None,
    count: int = 4,
) -> list[Path]:
    """Generate ``count`` images (image i with seed ``seed + i``; a random seed when None) and write them with
    provenance, the watermark and, with a signer, Content Credentials (``OutputOptions``), plus a contact grid.
    Returns the written image paths. ``model``: a shipped name or model folder, or ``load_pipeline``'s result.

    ``request.init_image``: an image (say a real tile) whose encoding the sampler starts from, redrawing the last
    ``sampling.strength`` share of its steps (SDEdit; None: 0.3); its sha256 and the strength are recorded.
    ``request.inpaint_mask`` inpaints: a mask of the init image's size (nonzero: redraw, zero: keep) whose region
    is redrawn (strength None: 1.0, from noise), every other pixel kept exactly, watermark included; the output
    has the init image's size, as must the layout. The mask's sha256 and the share of pixels redrawn are recorded.
    Every input and option is checked before any sampling; options the generator does not take are refused by
    ``check_sampling``."""
    if count < 1:
        raise InputError(None, "--n must be at least 1")
    if sampling.strength is not None and request.init_image is None:
        raise InputError(None, "--strength needs --init-image", "give the image to redraw, or drop --strength")
    if request.init_image is not None and sampling.strength is None:
        sampling = dataclasses.replace(sampling, strength=1.0 if request.inpaint_mask is not None else 0.3)
    inpaint = None
    if request.inpaint_mask is not None:  # read and checked before the model loads
        inpaint = _inpaint_inputs(request.init_image, request.inpaint_mask, request.height, request.width)
    signer = output.signer
    if signer is not None:
        load_credentials(signer)  # a bad certificate or key fails now, not after sampling; read once per run
    generator, model_id, model_sha = model if isinstance(model, tuple) else load_pipeline(model, sampling.scheduler)
    check_sampling(generator, sampling, request.init_image)
    sampling = sampling.resolve(generator)
    layout = request.layout
    if isinstance(layout, LayoutSpec):
        layout = layout.load(generator.layout_classes)
    elif layout is None and not request.prompt:
        log.warning("no layout and no prompt: sampling unconditionally")
    extra, start, regions = {}, {}, None
    if request.init_image is not None:
        extra = {"init_image": str(request.init_image), "init_image_sha256": file_sha256(request.init_image)}
        if inpaint is None:
            shape = layout.classes.shape if layout is not None else (request.height or 256, request.width or 256)
            start = {"init_image": _init_image(request.init_image, shape)}
        else:
            image, redraw = inpaint
            if layout is not None and tuple(layout.classes.shape) != tuple(redraw.shape):
                raise InputError(
                    _layout_path(request),
                    f"the layout is {_size(layout.classes.shape)} but the init image {request.init_image} is "
                    f"{_size(redraw.shape)}",
                    "give a layout of the init image's size (for GeoJSON: --size, --grid)",
                )
            start = {"init_image": image, "inpaint_mask": torch.from_numpy(redraw).float()}
            extra |= {
                "inpaint_mask": str(request.inpaint_mask),
                "inpaint_mask_sha256": file_sha256(request.inpaint_mask),
                "inpaint_area": round(float(redraw.mean()), 6),
            }
            regions = [redraw] * count
    prompts, seeds = prompts_and_seeds(request.prompt, count, seed)
    result = generator.sample(
        prompts,
        None if layout is None else layout.classes,
        sampling,
        seeds,
        height=request.height,
        width=request.width,
        progress=output.progress,
        **start,
    )
    records = provenance_records(result, model_id, model_sha, sampling, layout, extra)
    path = _layout_path(request)
    stem = output.stem or (Path(path).stem if path else "generated")
    written = write_generated(
        result.images, records, output.out_dir, stem, layout, watermark=output.watermark, signer=signer, regions=regions
    )
    write_contact_grid(result.images, Path(output.out_dir) / f"{stem}-grid.png", layout)
    return written


def _layout_path(request: GenerationRequest) -> Path | None:
    """The layout's file, when the request names one."""
    return Path(request.layout.path) if isinstance(request.layout, LayoutSpec) else None


def _init_image(path: str | Path, shape: tuple[int, int]) -> torch.Tensor:
    """The image at ``path`` as 1×3×H×W in [0, 1], resized (bilinear) to ``shape`` when it differs."""
    image = read_image(path)[None]
    if tuple(image.shape[-2:]) != tuple(shape):
        log.warning("%s is %s×%s: resized to %s×%s", path, *image.shape[-2:], *shape)
        image = F.interpolate(image, tuple(shape), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return image


def _inpaint_inputs(
    image_path: str | Path, mask_path: str | Path, height: int | None, width: int | None
) -> tuple[torch.Tensor, np.ndarray]:
    """(the init image as 1×3×H×W in [0, 1], the mask as bool H×W, True = redraw), checked by
    ``check_inpaint_mask``."""
    image = read_image(image_path)[None]
    redraw = read_inpaint_mask(mask_path)
    check_inpaint_mask(redraw, mask_path, tuple(image.shape[-2:]), image_path, height, width)
    return image, redraw


def check_inpaint_mask(
    redraw: np.ndarray,
    mask_path: str | Path,
    size: tuple[int, int],
    image_path: str | Path,
    height: int | None = None,
    width: int | None = None,
) -> None:
    """An inpainting mask (bool H×W) against the init image's ``size`` (H, W) and any --height/--width: the same
    size, neither empty nor full."""
    if redraw.shape != size:
        raise InputError(
            mask_path,
            f"the mask is {_size(redraw.shape)} but the init image {image_path} is {_size(size)}",
            "give a mask of the init image's size",
        )
    if (height or size[0], width or size[1]) != size:
        raise InputError(
            None, f"--height/--width differ from the init image's size {_size(size)}", "drop them when inpainting"
        )
    if not redraw.any():
        raise InputError(mask_path, "the mask is all zero: nothing to redraw", "mark the region to redraw nonzero")
    if redraw.all():
        raise InputError(
            mask_path,
            "the mask covers the whole image: nothing to keep",
            "leave the pixels to keep zero, or redraw the whole tile with --init-image and --strength alone",
        )


def read_inpaint_mask(path: str | Path) -> np.ndarray:
    """An inpainting mask (PNG or TIFF, one band or RGB) as bool H×W: True where any band is nonzero (redraw).
    A palette image is read by index, not colour."""
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise InputError(path, "a JPEG mask is refused: compression makes black pixels near edges nonzero", "use PNG")
    if path.suffix.lower() in GEOTIFF_SUFFIXES and path.is_file():
        return (read_image(path) > 0).any(0).numpy()
    image = _open_pil(path)
    array = np.asarray(image if image.mode in ("1", "L", "P", "I", "I;16", "F") else image.convert("RGB"))
    return array.any(-1) if array.ndim == 3 else array != 0


def _size(shape) -> str:
    """ "W×H" of an H×W shape."""
    return f"{shape[-1]}×{shape[-2]}"


__all__ = [
    "GenerationRequest",
    "LayoutSpec",
    "OutputOptions",
    "Sampling",
    "check_inpaint_mask",
    "generate_images",
    "load_pipeline",
    "read_inpaint_mask",
]
