"""``generate_images``: the one call behind ``terrasynth generate``, for either kind of model."""

from __future__ import annotations

import logging
from pathlib import Path

from ..data.classes import ClassTable
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
    strength: float = 0.3,
    mean_prior: bool | None = None,
) -> list[Path]:
    """Generate ``num_images`` images and write them (PNG, or GeoTIFF for a georeferenced layout) with
    provenance and an invisible watermark (``watermark=False``: none, recorded in the metadata), plus
    ``grid.png``. With a ``signer``, each image also carries signed C2PA Content Credentials. Returns the
    written image paths. ``steps`` and ``guidance_scale`` None: the model's own defaults. ``init_image_path``:
    an image (say a real tile) whose encoding the sampler starts from, redrawing the last ``strength`` share of
    its steps (SDEdit); its sha256 and the strength are recorded in the provenance. ``mean_prior``: None uses
    the model's mean prior where it applies (``LayoutToImagePipeline``), False turns it off."""
    if num_images < 1:
        raise InputError(None, "--n must be at least 1")
    if steps is not None and steps < 1:
        raise InputError(None, "--steps must be at least 1")
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
    extra, start = {}, {}
    if init_image_path is not None:
        if not 0 < strength <= 1:
            raise InputError(None, f"--strength must be in (0, 1], got {strength}")
        shape = layout.classes.shape if layout is not None else (height or 256, width or 256)
        start = {"init_latents": _init_latents(pipe, init_image_path, shape), "strength": strength}
        extra = {
            "init_image": str(init_image_path),
            "init_image_sha256": file_sha256(init_image_path),
            "strength": float(strength),
        }
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
    written = write_generated(output.images, records, out_dir, stem, layout, watermark=watermark, signer=signer)
    write_contact_grid(output.images, Path(out_dir) / f"{stem}-grid.png", layout)
    return written


def _init_latents(pipe, path: str | Path, shape: tuple[int, int]):
    """The scaled latents of the image at ``path``, resized (bilinear) to ``shape`` when it differs."""
    import torch
    import torch.nn.functional as F

    from ..data.images import read_image

    if not isinstance(pipe, LayoutToImagePipeline):
        raise InputError(path, "--init-image needs an embedded model", "use the default model or one from train")
    image = read_image(path)[None]
    if tuple(image.shape[-2:]) != tuple(shape):
        log.warning("%s is %s×%s: resized to %s×%s", path, *image.shape[-2:], *shape)
        image = F.interpolate(image, tuple(shape), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    multiple = pipe.model.config.size_multiple
    padded = [-(-n // multiple) * multiple for n in shape]
    image = F.pad(image, (0, padded[1] - shape[1], 0, padded[0] - shape[0]), mode="replicate")
    with torch.no_grad():
        return pipe.model.encode_images(image.to(pipe.model.device))


def _layout_classes(pipe) -> ClassTable | None:
    """The model's layout classes (a Stable Diffusion generator has them itself)."""
    return pipe.layout_classes if hasattr(pipe, "layout_classes") else pipe.model.config.layout_classes


__all__ = ["generate_images", "load_pipeline"]
