"""The embedded default model: latent diffusion small enough for a CPU, built from diffusers parts.

- ``vae``: a small ``AutoencoderKL`` (4× down-sampling) trained on satellite tiles; None for a pixel model.
- ``unet``: a ``UNet2DModel`` whose input is the noisy latent concatenated with the layout (class shares at
  latent resolution, one channel per class) and a "layout given" channel; fully convolutional, so it samples
  at any size that is a multiple of ``size_multiple``.
- ``mean_prior`` (optional): training tiles' latent means by class shares, from which generation draws each
  tile's global colour (``models/mean_prior.py``).
- ``condition``: the prompt embedding (all-MiniLM-L6-v2) or a scene-class embedding, projected to the UNet's
  time-embedding width and added to it (ADM-style); a learned null embedding stands for a dropped prompt,
  which is what classifier-free guidance needs.

A saved model is a folder: ``terrasynth_model.json`` (this config), ``vae/``, ``unet/``, ``condition/`` (each a
diffusers ``save_pretrained`` folder of ``config.json`` + safetensors), ``scheduler/`` and, with a mean prior,
``mean_prior/``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import load_file
from torch import nn

from ..config import load_config, save_config
from ..data.classes import LANDCOVER_AI, ClassTable
from ..errors import InputError
from ..files import follow_umask, read_json
from .colour_correction import (
    COLOUR_CORRECTION_WEIGHTS_NAME,
    ColourCorrection,
    apply_colour_correction,
    load_colour_correction,
    save_colour_correction,
)
from .mean_prior import MEAN_PRIOR_FOLDER, LatentMeanPrior, MeanPriorConfig
from .text import TEXT_DIM, TEXT_ENCODER_NAME

MODEL_CONFIG_NAME = "terrasynth_model.json"
CONDITIONINGS = ("text", "class", "none")


@dataclass(frozen=True)
class AutoencoderConfig:
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    latent_channels: int = 4
    layers_per_block: int = 1
    # A deeper decoder than encoder (None: the same depth). diffusers' AutoencoderKL has one layers_per_block for
    # both, so a deeper decoder is swapped in after building and recorded in the part's config.json.
    decoder_layers_per_block: int | None = None

    def __post_init__(self):
        if len(self.block_out_channels) < 2:
            raise ValueError("the autoencoder needs at least two levels")
        if self.decoder_layers_per_block is not None and self.decoder_layers_per_block < self.layers_per_block:
            raise ValueError("decoder_layers_per_block must be at least layers_per_block")

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def build(self) -> AutoencoderKL:
        levels = len(self.block_out_channels)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            norm_num_groups=min(32, self.block_out_channels[0]),
            mid_block_add_attention=False,  # attention at full latent size makes large tiles crawl
        )
        if self.decoder_layers_per_block not in (None, self.layers_per_block):
            set_decoder_depth(vae, self.decoder_layers_per_block)
        return vae


@dataclass(frozen=True)
class DenoiserConfig:
    block_out_channels: tuple[int, ...] = (32, 64, 128, 256)
    layers_per_block: int = 2
    attention_levels: tuple[int, ...] = (3,)
    attention_head_dim: int = 32
    norm_num_groups: int = 16
    dropout: float = 0.0

    def __post_init__(self):
        if any(not 0 <= level < len(self.block_out_channels) for level in self.attention_levels):
            raise ValueError("attention_levels must index block_out_channels")

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    def build(self, in_channels: int, out_channels: int) -> UNet2DModel:
        down = tuple(
            "AttnDownBlock2D" if i in self.attention_levels else "DownBlock2D"
            for i in range(len(self.block_out_channels))
        )
        up = tuple(name.replace("Down", "Up") for name in reversed(down))
        return UNet2DModel(
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=self.block_out_channels,
            down_block_types=down,
            up_block_types=up,
            layers_per_block=self.layers_per_block,
            attention_head_dim=self.attention_head_dim,
            norm_num_groups=self.norm_num_groups,
            dropout=self.dropout,
            class_embed_type="identity",
        )


@dataclass(frozen=True)
class EmbeddedModelConfig:
    """Everything that defines the embedded model; the constructor of :class:`EmbeddedDiffusionModel`."""

    class_table: dict | None = field(default_factory=LANDCOVER_AI.to_dict)
    conditioning: str = "text"
    scene_classes: tuple[str, ...] = ()
    text_encoder: str = TEXT_ENCODER_NAME
    text_dim: int = TEXT_DIM
    autoencoder: AutoencoderConfig | None = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    prediction_type: str = "v_prediction"
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_train_timesteps: int = 1000
    # Rescale the betas so the last training timestep is pure noise (Lin et al. 2024). Without it the tile's
    # mean colour leaks through the "noisiest" training input, the model learns to copy it instead of
    # drawing it from the layout, and samples (which start from pure noise) come out in average colours.
    rescale_betas_zero_snr: bool = False
    name: str = "terrasynth-embedded"
    # The classifier-free guidance scale generation uses when the caller gives none: the best trade between
    # realism and layout fidelity differs from model to model (docs/default_model.md).
    guidance_scale: float = 2.0
    # The number of sampler steps generation takes when the caller gives none (docs/default_model.md).
    sampling_steps: int = 10
    # Draw each layout-conditioned tile's latent mean from training tiles of the same class shares and start
    # sampling from it (models/mean_prior.py); None: sample from pure noise. The table is in ``mean_prior/``.
    mean_prior: MeanPriorConfig | None = None
    # The image side (pixels) the denoiser was trained at, its working size: a larger layout is sampled and
    # decoded in overlapping windows of this side (generate/multidiffusion.py).
    sample_size: int = 256

    def __post_init__(self):
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.conditioning == "class" and not self.scene_classes:
            raise ValueError("class conditioning needs scene_classes")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unknown prediction_type {self.prediction_type!r}")
        if self.rescale_betas_zero_snr and self.prediction_type == "epsilon":
            raise ValueError("a zero terminal SNR needs v_prediction or sample prediction, not epsilon")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 1.0):
            raise ValueError(f"guidance_scale must be a finite number of at least 1, got {self.guidance_scale}")
        if isinstance(self.sampling_steps, bool) or not isinstance(self.sampling_steps, int) or self.sampling_steps < 1:
            raise ValueError(f"sampling_steps must be a whole number of at least 1, got {self.sampling_steps!r}")
        if isinstance(self.sample_size, bool) or not isinstance(self.sample_size, int) or self.sample_size < 1:
            raise ValueError(f"sample_size must be a whole number of pixels, got {self.sample_size!r}")
        if self.sample_size % self.size_multiple:
            raise ValueError(f"sample_size {self.sample_size} must be a multiple of {self.size_multiple}")
        if self.class_table is not None:
            ClassTable.from_dict(self.class_table)  # validates
        if self.mean_prior is not None and self.class_table is None:
            raise ValueError("a mean prior draws by layout class shares: it needs a class_table")

    @property
    def layout_classes(self) -> ClassTable | None:
        return None if self.class_table is None else ClassTable.from_dict(self.class_table)

    @property
    def num_layout_channels(self) -> int:
        return 0 if self.class_table is None else len(self.class_table["classes"]) + 1

    @property
    def image_channels(self) -> int:
        return 3 if self.autoencoder is None else self.autoencoder.latent_channels

    @property
    def downsampling(self) -> int:
        return 1 if self.autoencoder is None else self.autoencoder.downsampling

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: autoencoder and UNet down-sampling together."""
        return self.downsampling * 2 ** (len(self.denoiser.block_out_channels) - 1)

    def noise_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            prediction_type=self.prediction_type,
            rescale_betas_zero_snr=self.rescale_betas_zero_snr,
            clip_sample=False,
        )


class ConditionEncoder(ModelMixin, ConfigMixin):
    """Prompt embedding or scene class → a vector added to the UNet's time embedding."""

    @register_to_config
    def __init__(self, text_dim: int = TEXT_DIM, num_scene_classes: int = 0, embed_dim: int = 128):
        super().__init__()
        self.text_projection = (
            nn.Sequential(nn.Linear(text_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
            if text_dim
            else None
        )
        self.class_embedding = nn.Embedding(num_scene_classes, embed_dim) if num_scene_classes else None
        self.null_embedding = nn.Parameter(torch.zeros(embed_dim))

    def forward(
        self,
        batch_size: int,
        text_embeds: torch.Tensor | None = None,
        class_ids: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``keep`` (bool, B) marks samples whose condition is used; the rest get the null embedding."""
        null = self.null_embedding.expand(batch_size, -1)
        if text_embeds is not None and self.text_projection is not None:
            embedded = self.text_projection(text_embeds.to(self.null_embedding.dtype))
        elif class_ids is not None and self.class_embedding is not None:
            embedded = self.class_embedding(class_ids)
        else:
            return null
        if keep is None:
            return embedded
        return torch.where(keep[:, None], embedded, null)


def layout_to_channels(
    layout: torch.Tensor | None, num_classes: int, batch_size: int, size: tuple[int, int], keep=None
) -> torch.Tensor:
    """Class-index layouts (B×H×W) → class shares at ``size`` (area average of the one-hot) plus a
    "layout given" channel. A missing layout, or one with ``keep`` False, is all zeros."""
    channels = torch.zeros(batch_size, num_classes + 1, *size)
    if layout is None:
        return channels
    if layout.dim() == 2:
        layout = layout.expand(batch_size, -1, -1)
    onehot = F.one_hot(layout.long().clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()
    if tuple(onehot.shape[-2:]) != tuple(size):
        onehot = F.adaptive_avg_pool2d(onehot, size)
    channels = torch.cat([onehot, torch.ones(batch_size, 1, *size)], dim=1)
    if keep is not None:
        channels = channels * keep.view(-1, 1, 1, 1).float()
    return channels


def save_part(module: ModelMixin, folder: Path) -> None:
    """``module.save_pretrained`` as safetensors, without the folder the module was loaded from: diffusers
    records it (``_name_or_path``), and a saved folder should not carry the local path it was built from."""
    module.save_pretrained(folder, safe_serialization=True)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if config.pop("_name_or_path", None) is not None:
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    follow_umask(folder)  # diffusers writes its weights owner-only (0600), its config.json 0644


class EmbeddedDiffusionModel(nn.Module):
    def __init__(
        self,
        config: EmbeddedModelConfig,
        vae: AutoencoderKL | None = None,
        unet: UNet2DModel | None = None,
        condition: ConditionEncoder | None = None,
        mean_prior: LatentMeanPrior | None = None,
        colour_correction: ColourCorrection | None = None,
    ):
        super().__init__()
        self.config = config
        self.mean_prior = mean_prior
        if config.autoencoder is not None and vae is None:
            vae = config.autoencoder.build()
        self.vae = vae
        # The decoder's colour correction (models/colour_correction.py), a submodule saved beside the decoder.
        self.colour_correction = colour_correction
        in_channels = config.image_channels + config.num_layout_channels
        self.unet = unet if unet is not None else config.denoiser.build(in_channels, config.image_channels)
        self.condition = (
            condition
            if condition is not None
            else ConditionEncoder(
                text_dim=config.text_dim if config.conditioning == "text" else 0,
                num_scene_classes=len(config.scene_classes) if config.conditioning == "class" else 0,
                embed_dim=config.denoiser.time_embed_dim,
            )
        )

    @property
    def scaling_factor(self) -> float:
        return 1.0 if self.vae is None else float(self.vae.config.scaling_factor)

    def encode_images(self, images: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """[0, 1] images → scaled latents (or [-1, 1] pixels for a pixel model)."""
        pixels = images * 2 - 1
        if self.vae is None:
            return pixels
        distribution = self.vae.encode(pixels).latent_dist
        latents = distribution.sample(generator) if sample else distribution.mode()
        return latents * self.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → [0, 1] images: the decoder, then its colour correction (where the model has one)."""
        if self.vae is None:
            return ((latents + 1) / 2).clamp(0, 1)
        return decode_images(self.vae, latents / self.scaling_factor, self.colour_correction)

    def layout_channels(self, layout, batch_size: int, latent_size: tuple[int, int], keep=None) -> torch.Tensor | None:
        if self.config.class_table is None:
            return None
        num_classes = self.config.num_layout_channels - 1
        return layout_to_channels(layout, num_classes, batch_size, latent_size, keep).to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def predict(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        layout_channels: torch.Tensor | None,
        condition: torch.Tensor,
    ) -> torch.Tensor:
        model_input = noisy if layout_channels is None else torch.cat([noisy, layout_channels.to(noisy.dtype)], 1)
        return self.unet(model_input, timesteps, class_labels=condition.to(noisy.dtype)).sample

    # Saving and loading -------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write the model folder. Built beside the target and renamed into place, so it is never half-written."""
        import shutil

        directory = Path(directory)
        staging = directory.with_name(f".{directory.name}.partial")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        parts = {"unet": self.unet, "condition": self.condition}
        if self.vae is not None:
            parts["vae"] = self.vae
        for name, module in parts.items():
            module_to_save = module
            if dtype is not None:
                import copy

                module_to_save = copy.deepcopy(module).to(dtype)
            save_part(module_to_save, staging / name)
        if self.vae is not None:
            save_colour_correction(self.colour_correction, staging / "vae")
        if (self.mean_prior is None) != (self.config.mean_prior is None):
            raise ValueError("config.mean_prior and the model's mean prior table must be set together")
        if self.mean_prior is not None:
            self.mean_prior.save(staging / MEAN_PRIOR_FOLDER)
        self.config.noise_scheduler().save_pretrained(staging / "scheduler")
        save_config(self.config, staging / MODEL_CONFIG_NAME)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype = torch.float32) -> EmbeddedDiffusionModel:
        directory = Path(directory)
        config_path = directory / MODEL_CONFIG_NAME
        if not config_path.is_file():
            raise InputError(directory, f"not a terrasynth model folder (no {MODEL_CONFIG_NAME})")
        config = load_config(EmbeddedModelConfig, config_path)
        parts = {"unet": UNet2DModel, "condition": ConditionEncoder}
        if config.autoencoder is not None:
            parts["vae"] = _AutoencoderLoader
        loaded = {}
        for name, model_class in parts.items():
            folder = directory / name
            weights = _weight_files(folder)
            if not weights:
                others = [p.name for p in folder.glob("*.bin")] if folder.is_dir() else []
                fix = "convert it to safetensors; pickled weights are not loaded" if others else "re-save the model"
                raise InputError(folder, "no safetensors weights found", fix)
            loaded[name] = model_class.from_pretrained(folder, use_safetensors=True, torch_dtype=dtype)
        correction = None
        if "vae" in loaded:
            correction = load_colour_correction(directory / "vae", loaded["vae"].config.latent_channels)
        mean_prior = None
        if config.mean_prior is not None:
            mean_prior = LatentMeanPrior.load(directory / MEAN_PRIOR_FOLDER)
            _check_mean_prior(mean_prior, config, directory / MEAN_PRIOR_FOLDER)
        return cls(config, loaded.get("vae"), loaded["unet"], loaded["condition"], mean_prior, correction)


def _check_mean_prior(prior: LatentMeanPrior, config: EmbeddedModelConfig, source) -> None:
    """InputError unless the prior's class and latent channel counts are the model's."""
    classes = config.num_layout_channels - 1
    if prior.num_classes != classes or prior.latent_channels != config.image_channels:
        raise InputError(
            source,
            f"mean prior made for {prior.num_classes} classes and {prior.latent_channels} latent channels; the "
            f"model has {classes} and {config.image_channels}",
        )


def _weight_files(folder: Path) -> list[Path]:
    """A part folder's weight files; the decoder's colour correction is not one."""
    if not folder.is_dir():
        return []
    return [p for p in folder.glob("*.safetensors") if p.name != COLOUR_CORRECTION_WEIGHTS_NAME]


def _autoencoder_folder(folder: str | Path) -> Path:
    """An autoencoder's folder: a train-autoencoder output folder, or a model folder's ``vae/``."""
    folder = Path(folder)
    if (folder / "vae").is_dir():
        folder = folder / "vae"
    if not _weight_files(folder):
        raise InputError(folder, "no autoencoder weights (safetensors) found", "train one with train-autoencoder")
    return folder


def load_autoencoder(folder: str | Path) -> AutoencoderKL:
    """A trained ``AutoencoderKL`` in float32: a train-autoencoder output folder, or a model folder's ``vae/``."""
    return _AutoencoderLoader.from_pretrained(_autoencoder_folder(folder), torch_dtype=torch.float32)


def load_autoencoder_and_correction(folder: str | Path) -> tuple[AutoencoderKL, ColourCorrection | None]:
    """:func:`load_autoencoder` and the decoder's colour correction saved beside it (None where there is none)."""
    folder = _autoencoder_folder(folder)
    vae = _AutoencoderLoader.from_pretrained(folder, torch_dtype=torch.float32)
    return vae, load_colour_correction(folder, vae.config.latent_channels)


def decoder_depth(vae: AutoencoderKL) -> int:
    """Resnets per decoder level, less one (diffusers' layers_per_block for the decoder)."""
    return len(vae.decoder.up_blocks[0].resnets) - 1


def _build_decoder(vae: AutoencoderKL, layers_per_block: int):
    from diffusers.models.autoencoders.vae import Decoder

    config = vae.config
    return Decoder(
        in_channels=config.latent_channels,
        out_channels=config.out_channels,
        up_block_types=config.up_block_types,
        block_out_channels=config.block_out_channels,
        layers_per_block=layers_per_block,
        norm_num_groups=config.norm_num_groups,
        act_fn=config.act_fn,
        mid_block_add_attention=config.mid_block_add_attention,
    )


def set_decoder_depth(vae: AutoencoderKL, layers_per_block: int) -> AutoencoderKL:
    """Give ``vae`` a fresh decoder of ``layers_per_block`` (+1 resnets a level), recorded in its config."""
    vae.decoder = _build_decoder(vae, layers_per_block).to(device=vae.device, dtype=vae.dtype)
    vae.register_to_config(decoder_layers_per_block=layers_per_block)
    return vae


@torch.no_grad()
def grow_decoder(vae: AutoencoderKL, layers_per_block: int) -> AutoencoderKL:
    """Deepen a trained decoder without changing what it computes: every level gets its new resnets after the
    old ones, each with a zeroed last convolution, so it starts as the identity (same channels in and out, no
    shortcut convolution) and training grows it from there."""
    old = vae.decoder
    if layers_per_block < decoder_depth(vae):
        raise ValueError(f"the decoder already has {decoder_depth(vae)} layers per block, more than {layers_per_block}")
    set_decoder_depth(vae, layers_per_block)
    unexpected = vae.decoder.load_state_dict(old.state_dict(), strict=False).unexpected_keys
    if unexpected:
        raise RuntimeError(f"decoder keys with no place in the deeper decoder: {unexpected[:3]}")
    for block_old, block_new in zip(old.up_blocks, vae.decoder.up_blocks):
        for resnet in block_new.resnets[len(block_old.resnets) :]:
            resnet.conv2.weight.zero_()
            resnet.conv2.bias.zero_()
    return vae


class _AutoencoderLoader:
    """``from_pretrained`` for an autoencoder part: diffusers' own, unless its config.json records a deeper
    decoder, which AutoencoderKL cannot build; then built here and the weights loaded strictly."""

    @staticmethod
    def from_pretrained(folder, use_safetensors: bool = True, torch_dtype=torch.float32) -> AutoencoderKL:
        folder = Path(folder)
        config = read_json(folder / "config.json")
        layers = config.pop("decoder_layers_per_block", None)
        if layers is None:
            return AutoencoderKL.from_pretrained(folder, use_safetensors=use_safetensors, torch_dtype=torch_dtype)
        vae = set_decoder_depth(AutoencoderKL.from_config(config), int(layers))
        state = {}
        for path in _weight_files(folder):
            state.update(load_file(str(path)))
        try:
            vae.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise InputError(folder, f"weights do not fit its config.json ({str(error).splitlines()[0]})") from None
        return vae if torch_dtype == torch.float32 else vae.to(torch_dtype)


def save_autoencoder(vae: AutoencoderKL, folder: str | Path, colour_correction: ColourCorrection | None = None) -> None:
    """The autoencoder as a diffusers folder, with ``colour_correction`` beside it (None: any there is removed)."""
    save_part(vae, Path(folder))
    save_colour_correction(colour_correction, Path(folder))


def decode_images(
    vae: AutoencoderKL, latents: torch.Tensor, colour_correction: ColourCorrection | None = None
) -> torch.Tensor:
    """Unscaled latents → [0, 1] images: diffusers' ``vae.decode``, then ``colour_correction``'s offset, clamped."""
    images = (vae.decode(latents).sample + 1) / 2
    return apply_colour_correction(colour_correction, latents, images).clamp(0, 1)


def model_fingerprint(directory: str | Path) -> str:
    """sha256 over the model folder's config and weight files: names a model in provenance records."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and (path.suffix in (".safetensors", ".json")):
            digest.update(path.relative_to(directory).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


__all__ = [
    "AutoencoderConfig",
    "ConditionEncoder",
    "DenoiserConfig",
    "EmbeddedDiffusionModel",
    "EmbeddedModelConfig",
    "layout_to_channels",
    "load_autoencoder",
    "load_autoencoder_and_correction",
    "model_fingerprint",
]
