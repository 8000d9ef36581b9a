"""``generate_images``: the one call behind ``terrasynth generate``, for either kind of model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import ClassTable
from ..data.images import GEOTIFF_SUFFIXES, _open_pil, read_image
from ..data.layouts import TileGrid, load_layout
from ..errors import InputError
from ..files import file_sha256, read_json
from ..models.embedded import model_fingerprint
from ..models.registry import SHIPPED_MODELS, resolve_model_path
from ..models.stable_diffusion import is_stable_diffusion_model
from .content_credentials import SignerConfig, load_credentials
from .outputs import provenance_records, write_contact_grid, write_generated
from .pipeline import LayoutToImagePipeline, resolve_guidance_scale, resolve_steps
from .pix2pix_generator import Pix2PixGenerator, is_pix2pix_model
from .schedulers import DEFAULT_SCHEDULER

log = logging.getLogger(__name__)


def load_pipeline(model: str | Path, scheduler: str = DEFAULT_SCHEDULER) -> tuple[LayoutToImagePipeline, str, str]:
    """(pipeline, model id, model sha256) for a shipped model name or a model folder (embedded, pix2pix, or Stable
    Diffusion: a diffusers folder, or LoRA / textual-inversion weights from ``terrasynth finetune``)."""
    if is_stable_diffusion_model(model):
        from .sd_pipeline import load_sd_generator

        return load_sd_generator(model, scheduler)
    path = resolve_model_path(model)
    if is_pix2pix_model(path):
        pipeline = Pix2PixGenerator.from_pretrained(path)
    else:
        pipeline = LayoutToImagePipeline.from_pretrained(path, scheduler=scheduler)
    model_id = str(model) if str(model) in SHIPPED_MODELS else str(path)
    return pipeline, model_id, model_fingerprint(path)


def generate_images(
    model: str | Path = "default",
    prompt: str = "",
    layout_path: str | Path | None = None,
    out_dir: str | Path = "generated",
    num_images: int = 4,
    seed: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: str = DEFAULT_SCHEDULER,
    height: int | None = None,
    width: int | None = None,
    class_table_path: str | Path | None = None,
    grid: TileGrid | None = None,
    class_property: str = "class",
    class_map_path: str | Path | None = None,
    size: int = 256,
    progress: bool = False,
    pipeline: tuple | None = None,
    stem: str | None = None,
    watermark: bool = True,
    signer: SignerConfig | None = None,
    guidance_interval: tuple[float, float] | None = None,
    guidance_rescale: float = 0.0,
    init_image_path: str | Path | None = None,
    strength: float | None = None,
    mean_prior: bool | None = None,
    inpaint_mask_path: str | Path | None = None,
) -> list[Path]:
    """Generate ``num_images`` images and write them (PNG, or GeoTIFF for a georeferenced layout) with
    provenance and an invisible watermark (``watermark=False``: none, recorded in the metadata), plus
    ``grid.png``. With a ``signer``, each image also carries signed C2PA Content Credentials. Returns the
    written image paths. ``steps`` and ``guidance_scale`` None: the model's own defaults. ``init_image_path``:
    an image (say a real tile) whose encoding the sampler starts from, redrawing the last ``strength`` share of
    its steps (SDEdit; ``strength`` None: 0.3); its sha256 and the strength are recorded in the provenance.
    ``inpaint_mask_path`` with ``init_image_path`` inpaints: a mask image of the init image's size (nonzero:
    redraw, zero: keep) whose region is redrawn (``strength`` None: 1.0, from noise), every other pixel kept
    exactly, watermark included; the output has the init image's size, as must the layout. The mask file's sha256
    and the share of pixels redrawn are recorded. ``mean_prior``: None uses the model's mean prior where it
    applies (``LayoutToImagePipeline``), False turns it off."""
    if num_images < 1:
        raise InputError(None, "--n must be at least 1")
    if steps is not None and steps < 1:
        raise InputError(None, "--steps must be at least 1")
    if inpaint_mask_path is not None and init_image_path is None:
        raise InputError(
            inpaint_mask_path, "--inpaint-mask needs --init-image", "give the tile to inpaint with --init-image TILE"
        )
    if strength is None:
        strength = 1.0 if inpaint_mask_path is not None else 0.3
    if init_image_path is not None and not 0 < strength <= 1:
        raise InputError(None, f"--strength must be in (0, 1], got {strength}")
    inpaint = None
    if inpaint_mask_path is not None:  # read and checked before the model loads
        inpaint = _inpaint_inputs(init_image_path, inpaint_mask_path, height, width)
    if signer is not None:
        load_credentials(signer)  # a bad certificate or key fails now, not after sampling
    pipe, model_id, model_sha = pipeline or load_pipeline(model, scheduler)
    guidance_scale, steps = resolve_guidance_scale(pipe, guidance_scale), resolve_steps(pipe, steps)
    layout = None
    if layout_path is not None:
        table = ClassTable.from_json(class_table_path) if class_table_path else _layout_classes(pipe)
        if table is None:
            raise InputError(layout_path, "this model takes no layout", "generate from --prompt alone")
        model_table = _layout_classes(pipe)
        if model_table is not None and table.names != model_table.names:
            raise InputError(class_table_path, f"classes {table.names} differ from the model's {model_table.names}")
        class_map = read_json(class_map_path) if class_map_path else None
        layout = load_layout(
            layout_path, table, grid=grid, class_property=class_property, class_map=class_map, size=size
        )
    elif not prompt:
        log.warning("no layout and no prompt: sampling unconditionally")
    guidance = {"guidance_interval": guidance_interval, "guidance_rescale": guidance_rescale}
    extra, start, regions = {}, {}, None
    if init_image_path is not None:
        if not isinstance(pipe, LayoutToImagePipeline):
            raise InputError(
                init_image_path, "--init-image needs an embedded model", "use the default model or one from train"
            )
        extra = {
            "init_image": str(init_image_path),
            "init_image_sha256": file_sha256(init_image_path),
            "strength": float(strength),
        }
        if inpaint is None:
            shape = layout.classes.shape if layout is not None else (height or 256, width or 256)
            start = {"init_image": _init_image(init_image_path, shape), "strength": strength}
        else:
            image, redraw = inpaint
            if layout is not None and tuple(layout.classes.shape) != tuple(redraw.shape):
                raise InputError(
                    layout_path,
                    f"the layout is {_size(layout.classes.shape)} but the init image {init_image_path} is "
                    f"{_size(redraw.shape)}",
                    "give a layout of the init image's size (for GeoJSON: --size, --grid)",
                )
            start = {"init_image": image, "inpaint_mask": torch.from_numpy(redraw).float(), "strength": strength}
            extra |= {
                "inpaint_mask": str(inpaint_mask_path),
                "inpaint_mask_sha256": file_sha256(inpaint_mask_path),
                "inpaint_area": round(float(redraw.mean()), 6),
            }
            regions = [redraw] * num_images
    output = pipe(
        prompt,
        layout=None if layout is None else layout.classes,
        num_images=num_images,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        scheduler=scheduler,
        progress=progress,
        **guidance,
        **start,
        **({} if mean_prior is None else {"mean_prior": mean_prior}),
    )
    records = provenance_records(
        output, model_id, model_sha, steps, guidance_scale, scheduler, layout, extra, **guidance
    )
    stem = stem or (Path(layout_path).stem if layout_path else "generated")
    written = write_generated(
        output.images, records, out_dir, stem, layout, watermark=watermark, signer=signer, regions=regions
    )
    write_contact_grid(output.images, Path(out_dir) / f"{stem}-grid.png", layout)
    return written


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
    """(the init image as 1×3×H×W in [0, 1], the mask as bool H×W, True = redraw), checked: the same size,
    neither empty nor full."""
    image = read_image(image_path)[None]
    redraw = read_inpaint_mask(mask_path)
    size = tuple(image.shape[-2:])
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
    return image, redraw


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


def _layout_classes(pipe) -> ClassTable | None:
    """The model's layout classes (a Stable Diffusion generator has them itself)."""
    return pipe.layout_classes if hasattr(pipe, "layout_classes") else pipe.model.config.layout_classes


__all__ = ["generate_images", "load_pipeline", "read_inpaint_mask"]
