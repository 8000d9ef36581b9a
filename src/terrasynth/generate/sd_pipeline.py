"""``terrasynth generate --model FOLDER`` for Stable Diffusion folders: a diffusers pipeline behind the same call
as :class:`~terrasynth.generate.pipeline.LayoutToImagePipeline`, returning the same ``GenerationOutput``.

A folder is Stable Diffusion when it has ``model_index.json`` (a ``StableDiffusionPipeline`` or
``StableDiffusionControlNetPipeline``, ours or anyone's), or when ``terrasynth finetune`` wrote LoRA weights or a
textual-inversion embedding there with a ``terrasynth_finetune.json`` naming the base. Layouts go to the ControlNet
encoded the way it was trained (display colours from ``ClassTable.render``, or one-hot) at the pipeline's
resolution; the images come back at the layout's size, so a GeoTIFF lands on the layout's grid.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.classes import ClassTable
from ..errors import InputError
from ..models.embedded import model_fingerprint
from ..models.stable_diffusion import (
    LORA_WEIGHTS,
    TEXTUAL_INVERSION_WEIGHTS,
    encode_layout,
    quiet_loading,
    read_finetune_info,
    resolve_base_model,
)
from .pipeline import (
    GenerationOutput,
    check_guidance_rescale,
    layouts_per_image,
    prompts_and_seeds,
    resolve_guidance_scale,
    resolve_steps,
)
from .sampling import LoadedGenerator, Sampling
from .schedulers import DEFAULT_SCHEDULER, make_scheduler

log = logging.getLogger(__name__)


class StableDiffusionGenerator:
    """``generator(prompt, layout=..., num_images=4, num_inference_steps=20, guidance_scale=7.5, seed=0)``."""

    default_guidance_scale = 7.5  # Stable Diffusion's usual scale
    default_steps = 20

    def __init__(
        self,
        pipe,
        class_table: ClassTable | None = None,
        layout_encoding: str = "color",
        resolution: int | None = None,
        scheduler: str = DEFAULT_SCHEDULER,
    ):
        self.pipe = pipe
        self.layout_classes = class_table if self.takes_layout else None
        self.layout_encoding = layout_encoding
        self.resolution = resolution or int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        self.scheduler_name = scheduler
        self.training_scheduler = pipe.scheduler

    @property
    def name(self) -> str:
        return type(self.pipe).__name__

    @property
    def sampling_options(self) -> frozenset[str]:
        """``guidance_rescale`` where the diffusers pipeline takes it (not ControlNet's)."""
        takes_rescale = "guidance_rescale" in inspect.signature(self.pipe.__call__).parameters
        return frozenset({"guidance_rescale"} if takes_rescale else ())

    def to(self, device: torch.device | str) -> StableDiffusionGenerator:
        self.pipe.to(device)
        return self

    @property
    def takes_layout(self) -> bool:
        return getattr(self.pipe, "controlnet", None) is not None

    @classmethod
    def from_pretrained(cls, directory: str | Path, scheduler: str = DEFAULT_SCHEDULER) -> StableDiffusionGenerator:
        pipe, info = load_sd_pipeline(directory)
        table = None
        if info.get("class_table"):
            table = ClassTable.from_dict(info["class_table"])
        elif (Path(directory) / "classes.json").is_file():
            table = ClassTable.from_json(Path(directory) / "classes.json")
        return cls(pipe, table, info.get("layout_encoding") or "color", info.get("resolution"), scheduler)

    def encode_layout(self, layout: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.layout_classes is None:
            raise InputError(
                None,
                "this ControlNet folder has no class table",
                "write classes.json (as terrasynth finetune does) next to model_index.json",
            )
        resized = F.interpolate(layout[:, None].float(), (height, width), mode="nearest")[:, 0].long()
        return encode_layout(resized, self.layout_classes, self.layout_encoding)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] = "",
        layout: torch.Tensor | None = None,
        num_images: int = 1,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | list[int] | None = None,
        scheduler: str | None = None,
        batch_size: int = 4,
        progress: bool = False,
        guidance_rescale: float = 0.0,
    ) -> GenerationOutput:
        # 1. Check inputs.
        guidance_scale = resolve_guidance_scale(self, guidance_scale)
        check_guidance_rescale(guidance_rescale)
        if guidance_rescale and "guidance_rescale" not in self.sampling_options:
            raise InputError(None, f"{self.name} has no guidance rescale", "leave it at 0")
        prompts, seeds = prompts_and_seeds(prompt, num_images, seed)
        num_images = len(prompts)
        num_inference_steps = resolve_steps(self, num_inference_steps)
        multiple = int(self.pipe.vae_scale_factor)
        out_size = None
        if layout is not None:
            if not self.takes_layout:
                raise InputError(None, "this model takes no layout", "generate from --prompt alone")
            num_classes = None if self.layout_classes is None else len(self.layout_classes)
            layout = layouts_per_image(layout, num_images, num_classes)
            out_size = tuple(layout.shape[-2:])
        # 2. The pipeline's resolution: given, else the model's (512 for SD 1.5); a multiple of the VAE's factor.
        height, width = height or self.resolution, width or self.resolution
        if height % multiple or width % multiple:
            raise InputError(None, f"--height and --width must be multiples of {multiple}, got {height}×{width}")
        self.pipe.scheduler = make_scheduler(scheduler or self.scheduler_name, self.training_scheduler)
        self.pipe.set_progress_bar_config(disable=not progress)
        images = []
        for start in range(0, num_images, batch_size):
            stop = min(start + batch_size, num_images)
            kwargs = {"guidance_rescale": guidance_rescale} if guidance_rescale else {}
            if layout is not None:
                kwargs["image"] = self.encode_layout(layout[start:stop], height, width).to(self.pipe.device)
            # One generator per image, seeded seed + i: image i is the same whatever the batch.
            generators = [torch.Generator().manual_seed(s) for s in seeds[start:stop]]
            chunk = self.pipe(
                prompts[start:stop],
                height=height,
                width=width,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generators,
                output_type="pt",
                **kwargs,
            ).images
            images.append(chunk.float().cpu().clamp(0, 1))
        images = torch.cat(images)
        # 3. Back to the layout's size, so the image lies on the layout's grid.
        if out_size is not None and tuple(images.shape[-2:]) != out_size:
            images = F.interpolate(images, out_size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return GenerationOutput(images, prompts, seeds)

    def sample(
        self,
        prompts: list[str],
        layout: torch.Tensor | None,
        sampling: Sampling,
        seeds: list[int],
        *,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 4,
        progress: bool = False,
        init_image: torch.Tensor | None = None,
        inpaint_mask: torch.Tensor | None = None,
    ) -> GenerationOutput:
        """``__call__`` with the options of ``sampling`` (``check_sampling`` has refused the others)."""
        if init_image is not None or inpaint_mask is not None:
            raise InputError(None, f"{self.name} takes no init image", "use an embedded model")
        return self(
            prompts,
            layout=layout,
            height=height,
            width=width,
            num_inference_steps=sampling.steps,
            guidance_scale=sampling.guidance_scale,
            seed=list(seeds),
            scheduler=sampling.scheduler,
            batch_size=batch_size,
            progress=progress,
            guidance_rescale=sampling.guidance_rescale,
        )


def load_sd_pipeline(directory: str | Path):
    """(diffusers pipeline, finetune info) of a Stable Diffusion folder; LoRA and textual-inversion folders load
    their base and apply themselves to it."""

    directory = Path(directory)
    info = read_finetune_info(directory)
    with quiet_loading():
        return _load(directory, info), info


def _load(directory: Path, info: dict):
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline

    safe = {"use_safetensors": True}
    index_path = directory / "model_index.json"
    try:
        if index_path.is_file():
            index = json.loads(index_path.read_text(encoding="utf-8"))
            kind = StableDiffusionControlNetPipeline if "controlnet" in index else StableDiffusionPipeline
            return kind.from_pretrained(directory, **safe)
        method = info.get("method")
        if method not in ("lora", "textual-inversion") or not info.get("base"):
            raise InputError(directory, "not a Stable Diffusion folder", "expected model_index.json")
        pipe = StableDiffusionPipeline.from_pretrained(resolve_base_model(info["base"]), **safe)
        if method == "lora":
            pipe.load_lora_weights(directory, weight_name=LORA_WEIGHTS)
        else:
            pipe.load_textual_inversion(directory, weight_name=TEXTUAL_INVERSION_WEIGHTS)
        return pipe
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(directory, f"cannot load the Stable Diffusion model ({first})") from None


def sd_fingerprint(directory: str | Path) -> str:
    """sha256 naming the model in provenance: the folder's files, and for LoRA/TI folders their base's too."""
    directory = Path(directory)
    info = read_finetune_info(directory)
    own = model_fingerprint(directory)
    if (directory / "model_index.json").is_file() or not info.get("base"):
        return own
    base = model_fingerprint(resolve_base_model(info["base"]))
    return hashlib.sha256(f"{base}:{own}".encode()).hexdigest()


def load_sd_generator(model: str | Path, scheduler: str = DEFAULT_SCHEDULER) -> LoadedGenerator:
    """(generator, model id, model sha256), as ``generate.api.load_pipeline`` returns it."""
    generator = StableDiffusionGenerator.from_pretrained(model, scheduler)
    return LoadedGenerator(generator, str(Path(str(model)).expanduser()), sd_fingerprint(model))


__all__ = ["StableDiffusionGenerator", "load_sd_generator", "load_sd_pipeline", "sd_fingerprint"]
