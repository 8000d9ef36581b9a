"""Stable Diffusion from a local diffusers folder or a hub id: find it, load its components, describe it.

A base model is a folder with ``model_index.json`` (as ``StableDiffusionPipeline.save_pretrained`` writes it) or
a hub id such as ``stable-diffusion-v1-5/stable-diffusion-v1-5``. A hub id is looked up in the local cache first
(``local_files_only``), then on the hub; when neither works the error names the id and how to pre-download it.
Weights load from safetensors only (``use_safetensors=True``): no pickle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a Stable Diffusion repo needs, without its single-file checkpoints and half-precision duplicates.
HUB_PATTERNS = [
    "model_index.json",
    "*/config.json",
    "*/*_config.json",
    "*/vocab.json",
    "*/merges.txt",
    "*/tokenizer.json",
    "*/special_tokens_map.json",
    "*/diffusion_pytorch_model.safetensors",
    "*/model.safetensors",
]
HUB_IGNORE = ["safety_checker/*", "*.fp16.*", "*.non_ema.*", "*.ckpt", "*.bin"]
# Files a fine-tuning run writes next to the weights: which base and method made the folder, its layout classes.
FINETUNE_INFO = "terrasynth_finetune.json"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
TEXTUAL_INVERSION_WEIGHTS = "learned_embeds.safetensors"


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide diffusers' and transformers' per-file progress bars while loading or saving (the CLI owns the
    console); their previous setting comes back afterwards."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _ in states:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in states:
            if enabled:
                module.enable_progress_bar()


def _unreachable(base: str) -> InputError:
    return InputError(
        None,
        f"base model {base} not found locally and the hub is unreachable",
        f"download it with `hf download {base} --local-dir DIR` on a machine with internet and pass --base DIR",
    )


def resolve_base_model(base: str | Path) -> Path:
    """The local folder of a Stable Diffusion base: ``base`` itself, or the cached/downloaded hub snapshot."""
    text = str(base)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(path, "a base model is a folder, not a file", "pass the diffusers folder")
        if not (path / "model_index.json").is_file():
            raise InputError(
                path,
                "not a diffusers pipeline folder (no model_index.json)",
                "pass a folder written by save_pretrained or downloaded from the hub",
            )
        return path
    if not HUB_ID.match(text):
        raise InputError(path, "base model folder not found", "pass a diffusers folder or a hub id like org/name")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(
            snapshot_download(text, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE, local_files_only=True)
        )
    except (LocalEntryNotFoundError, OSError, ValueError):
        log.info("%s is not in the local hub cache: trying the hub", text)
    try:
        return Path(snapshot_download(text, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE))
    except RepositoryNotFoundError:
        raise InputError(
            None, f"base model {text} is not a model on the hub (or needs a login)", "check the id"
        ) from None
    except Exception as error:  # connection, DNS, offline mode, HTTP: all mean "cannot get it from here"
        log.info("hub download of %s failed: %s", text, error)
        raise _unreachable(text) from None


@dataclass
class StableDiffusionComponents:
    """The parts of a Stable Diffusion pipeline that training touches, plus the folder they came from."""

    path: Path
    tokenizer: object
    text_encoder: object
    vae: object
    unet: object
    noise_scheduler: object
    controlnet: object | None = None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        """The pixel size the UNet was built for (512 for Stable Diffusion 1.5)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor


def _load(loader, path: Path, subfolder: str, **kwargs):
    folder = path / subfolder
    if not folder.is_dir():
        raise InputError(folder, f"the base model has no {subfolder}/ component", "pass a Stable Diffusion folder")
    try:
        return loader.from_pretrained(path, subfolder=subfolder, **kwargs)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(folder, f"cannot load {subfolder} ({first})", "weights must be safetensors") from None


def load_stable_diffusion(base: str | Path, controlnet: str | Path | None = None) -> StableDiffusionComponents:
    """Tokenizer, text encoder, VAE, UNet and training noise scheduler of ``base`` (and its ControlNet: the
    ``controlnet`` folder/hub id, else the base's own ``controlnet/`` when it has one)."""
    path = resolve_base_model(base)
    with quiet_loading():
        return _load_components(path, controlnet)


def _load_components(path: Path, controlnet: str | Path | None) -> StableDiffusionComponents:
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    safe = {"use_safetensors": True}
    components = StableDiffusionComponents(
        path=path,
        tokenizer=_load(CLIPTokenizer, path, "tokenizer"),
        text_encoder=_load(CLIPTextModel, path, "text_encoder", **safe),
        vae=_load(AutoencoderKL, path, "vae", **safe),
        unet=_load(UNet2DConditionModel, path, "unet", **safe),
        noise_scheduler=_load(DDPMScheduler, path, "scheduler"),
    )
    if controlnet is not None:
        controlnet_path = resolve_controlnet(controlnet)
        try:
            components.controlnet = ControlNetModel.from_pretrained(controlnet_path, **safe)
        except (OSError, ValueError) as error:
            raise InputError(controlnet_path, f"cannot load the ControlNet ({error})") from None
    elif (path / "controlnet").is_dir():
        components.controlnet = _load(ControlNetModel, path, "controlnet", **safe)
    return components


def resolve_controlnet(name: str | Path) -> Path:
    """A ControlNet folder (``config.json`` + safetensors) from a path or hub id, the way bases resolve."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        if (path / "controlnet" / "config.json").is_file():
            return path / "controlnet"
        if not (path / "config.json").is_file():
            raise InputError(path, "not a ControlNet folder (no config.json)")
        return path
    if not HUB_ID.match(str(name)):
        raise InputError(path, "ControlNet folder not found")
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "diffusion_pytorch_model.safetensors"]
    try:
        return Path(snapshot_download(str(name), allow_patterns=patterns, local_files_only=True))
    except Exception:
        try:
            return Path(snapshot_download(str(name), allow_patterns=patterns))
        except Exception:
            raise _unreachable(str(name)) from None


def controlnet_embedding_channels(vae_scale_factor: int) -> tuple[int, ...]:
    """ControlNet's conditioning-embedding widths for a layout given at pixel scale: one stride-2 level per
    halving the VAE does, so the embedded layout lands at latent scale ((16, 32, 96, 256) for SD's 8×)."""
    levels = max(0, int(vae_scale_factor).bit_length() - 1)
    widths = (16, 32, 96, 256)
    return tuple(widths[: levels + 1]) if levels < len(widths) else widths + (256,) * (levels + 1 - len(widths))


def encode_layout(layouts: torch.Tensor, class_table, encoding: str) -> torch.Tensor:
    """Class-index layouts (B×H×W) as ControlNet inputs in [0, 1]: display colours (B×3×H×W) or one-hot
    (B×K×H×W)."""
    layouts = layouts.long().clamp(0, len(class_table) - 1)
    if encoding == "onehot":
        return F.one_hot(layouts, len(class_table)).permute(0, 3, 1, 2).float()
    palette = torch.tensor(class_table.display_colors, dtype=torch.float32) / 255.0
    return palette[layouts].permute(0, 3, 1, 2).contiguous()


def is_stable_diffusion_model(path: str | Path) -> bool:
    """A diffusers pipeline folder, or a LoRA / textual-inversion folder written by ``terrasynth finetune``."""
    path = Path(str(path)).expanduser()
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / FINETUNE_INFO).is_file())


def read_finetune_info(path: str | Path) -> dict:
    """The ``terrasynth_finetune.json`` of a fine-tuned folder (method, base, layout classes…), or ``{}``."""
    info_path = Path(path) / FINETUNE_INFO
    if not info_path.is_file():
        return {}
    try:
        return json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(info_path, f"unreadable fine-tuning record ({error})") from None


__all__ = [
    "FINETUNE_INFO",
    "LORA_WEIGHTS",
    "TEXTUAL_INVERSION_WEIGHTS",
    "StableDiffusionComponents",
    "controlnet_embedding_channels",
    "encode_layout",
    "is_stable_diffusion_model",
    "load_stable_diffusion",
    "quiet_loading",
    "read_finetune_info",
    "resolve_base_model",
]
