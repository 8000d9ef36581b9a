"""Model packaging: from a training run (or a model folder) to a model folder that ships.

- ``build_model``: the model a training config describes (``init_from``'s weights or a fresh one);
- ``export_model`` / ``export_checkpoint``: a run's EMA weights as a model folder;
- ``reexport_model``: a model folder again, with a refined decoder (same encoder, checked), a new name or new
  defaults for generation;
- ``set_mean_prior``: fit the mean prior generation draws each tile's global colour from, or change its settings.

The decoder's colour correction (``models/colour_correction.py``) is saved beside the decoder and travels with it:
a refined decoder brings its own, and an exported model keeps its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.paired_tiles import PairedTiles
from ..data.transforms import Resize
from ..errors import InputError
from ..models.embedded import (
    EmbeddedDiffusionModel,
    EmbeddedModelConfig,
    decoder_depth,
    load_autoencoder_and_correction,
)
from ..models.mean_prior import MeanPriorConfig, fit_mean_prior
from .run import EMA


def build_model(
    config: EmbeddedModelConfig, init_from: str | None = None, autoencoder_path: str | None = None
) -> EmbeddedDiffusionModel:
    """The model a training config describes (its ``model``, ``init_from`` and ``autoencoder_path``): init_from's
    weights (the architectures must match) or a fresh model, with the autoencoder (and its decoder's colour
    correction) of ``autoencoder_path``; training starts from it and a checkpoint's EMA weights are exported into it.
    """
    if init_from:
        # Weights come from init_from; everything else (noise schedule, name) from the training config, so a
        # model can be fine-tuned onto a new schedule. The architectures must match. An autoencoder_path given
        # beside init_from replaces init_from's autoencoder: the denoiser is then fine-tuned into its latent space.
        init = EmbeddedDiffusionModel.from_pretrained(init_from)
        vae, correction = init.vae, init.colour_correction
        if autoencoder_path:
            vae, correction = load_autoencoder_and_correction(autoencoder_path)
        model = EmbeddedDiffusionModel(config, vae=vae, colour_correction=correction)
        try:
            model.unet.load_state_dict(init.unet.state_dict())
            model.condition.load_state_dict(init.condition.state_dict())
        except RuntimeError:
            raise InputError(
                init_from,
                "its architecture differs from the training config's model",
                "use the model section of the config it was trained with",
            ) from None
        return model
    model = EmbeddedDiffusionModel(config)
    if config.autoencoder is not None:
        model.vae, model.colour_correction = load_autoencoder_and_correction(autoencoder_path)
    return model


@dataclass(frozen=True)
class MeanPriorSource:
    """The tiles a mean prior is fitted on: a paired-tiles folder's split, resized to the size the model
    generates at."""

    data: str
    split: str = "train"
    size: int = 256
    progress: bool = True


def set_mean_prior(
    model: EmbeddedDiffusionModel,
    source: MeanPriorSource | None = None,
    settings: dict | None = None,
    origin: str | Path | None = None,
) -> None:
    """Fit a mean prior on ``source``'s tiles with ``model``'s encoder (replacing any table it had), and/or
    change its settings: the MeanPriorConfig fields in ``settings`` replace the model's own, the rest are kept
    (MeanPriorConfig's defaults where the model had no prior). InputError naming ``origin`` (the model folder)
    when there is no prior to change; a bad setting is refused before any fitting."""
    from dataclasses import replace

    if source is None and not settings:
        return
    if source is None and model.mean_prior is None:
        raise InputError(origin, "this model has no mean prior to change: fit one with --mean-prior DATA")
    try:
        new_settings = replace(model.config.mean_prior or MeanPriorConfig(), **(settings or {}))
    except ValueError as error:
        raise InputError(None, str(error)) from None
    if source is not None:
        model.mean_prior = fit_mean_prior(model, _mean_prior_tiles(model, source), progress=source.progress)
    model.config = replace(model.config, mean_prior=new_settings)


def _mean_prior_tiles(model: EmbeddedDiffusionModel, source: MeanPriorSource) -> PairedTiles:
    """``source``'s tiles for fitting ``model``'s mean prior; InputError if the model or the tiles cannot be."""
    if model.vae is None or model.config.class_table is None:
        raise InputError(source.data, "a mean prior needs a latent model that takes layouts")
    if source.size % model.config.size_multiple:
        raise InputError(None, f"mean prior size {source.size} is not a multiple of {model.config.size_multiple}")
    tiles = PairedTiles(source.data, source.split, Resize(source.size), class_table=model.config.layout_classes)
    if len(tiles) == 0:
        raise InputError(source.data, f"no tiles in split {source.split!r} to fit a mean prior on")
    return tiles


def export_model(model: EmbeddedDiffusionModel, ema_modules, directory: Path, dtype=None) -> Path:
    exported = EmbeddedDiffusionModel(
        model.config,
        model.vae,
        ema_modules["unet"],
        ema_modules["condition"],
        model.mean_prior,
        model.colour_correction,
    )
    exported.save_pretrained(directory, dtype=dtype)
    return directory


def export_checkpoint(
    config,
    checkpoint: Path,
    directory: Path,
    dtype=None,
    vae_path: str | None = None,
    guidance_scale: float | None = None,
    mean_prior: MeanPriorSource | None = None,
    sampling_steps: int | None = None,
    mean_prior_settings: dict | None = None,
) -> Path:
    """Write the EMA weights of a training checkpoint of ``config`` (a ``DiffusionTrainConfig``) as a model folder
    (e.g. to ship mid-training).

    ``vae_path``: an autoencoder whose decoder was refined after the diffusion model trained; it replaces the
    model's autoencoder only if its encoder is the same, so the latents the UNet learned stay valid.
    ``guidance_scale``, ``sampling_steps``: the model's defaults for generation (else the training config's).
    ``mean_prior``: fit one on its tiles and ship it, with ``mean_prior_settings`` (MeanPriorConfig fields)."""
    from .checkpoints import load_checkpoint

    model = build_model(config.model, config.init_from, config.autoencoder_path)
    if vae_path is not None:
        _swap_in_decoder(model, vae_path)
    model.config = _with_sampling_defaults(model.config, guidance_scale, sampling_steps)
    set_mean_prior(model, mean_prior, mean_prior_settings, origin=checkpoint)
    modules = torch.nn.ModuleDict({"unet": model.unet, "condition": model.condition})
    ema = EMA(modules)
    load_checkpoint(checkpoint, {"ema": ema.model})
    return export_model(model, ema.model, directory, dtype)


def reexport_model(
    model_dir: str | Path,
    vae_path: str | None,
    directory: Path,
    dtype=None,
    name: str | None = None,
    guidance_scale: float | None = None,
    mean_prior: MeanPriorSource | None = None,
    sampling_steps: int | None = None,
    mean_prior_settings: dict | None = None,
) -> Path:
    """Re-export a model folder with any of: the decoder of ``vae_path`` (same encoder and scaling factor,
    checked; ships a decoder refined after the training run's checkpoints are gone), a new model name, a new
    default guidance scale or number of sampling steps, a mean prior fitted on ``mean_prior``'s tiles (in place
    of any it had), new ``mean_prior_settings`` (MeanPriorConfig fields; the others keep the model's own)."""
    from dataclasses import replace

    model = EmbeddedDiffusionModel.from_pretrained(model_dir)
    if vae_path is not None:
        if model.vae is None:
            raise InputError(model_dir, "this model diffuses in pixel space; it has no decoder to replace")
        _swap_in_decoder(model, vae_path)
    if name:
        model.config = replace(model.config, name=name)
    model.config = _with_sampling_defaults(model.config, guidance_scale, sampling_steps)
    set_mean_prior(model, mean_prior, mean_prior_settings, origin=model_dir)
    model.save_pretrained(directory, dtype=dtype)
    return Path(directory)


def _with_sampling_defaults(config, guidance_scale: float | None, sampling_steps: int | None):
    """``config`` with the given defaults for generation replaced (None: kept); InputError naming a bad one."""
    from dataclasses import replace

    for flag, field_name, value in (
        ("--guidance-scale", "guidance_scale", guidance_scale),
        ("--sampling-steps", "sampling_steps", sampling_steps),
    ):
        if value is not None:
            try:
                config = replace(config, **{field_name: value})
            except ValueError as error:
                raise InputError(None, f"{flag} {value}: {error}") from None
    return config


def _swap_in_decoder(model: EmbeddedDiffusionModel, vae_path: str) -> None:
    """``model`` with the autoencoder of ``vae_path`` (same encoder, checked) and its decoder's depth recorded."""
    from dataclasses import replace

    model.vae, model.colour_correction = _refined_autoencoder(model.vae, vae_path)
    depth = decoder_depth(model.vae)
    recorded = None if depth == model.config.autoencoder.layers_per_block else depth
    if recorded != model.config.autoencoder.decoder_layers_per_block:
        autoencoder = replace(model.config.autoencoder, decoder_layers_per_block=recorded)
        model.config = replace(model.config, autoencoder=autoencoder)


def _refined_autoencoder(current, vae_path: str):
    """The autoencoder of ``vae_path`` and its decoder's colour correction; InputError unless its encoder is
    ``current``'s."""
    from .autoencoder import shares_latent_space

    refined, correction = load_autoencoder_and_correction(vae_path)
    if not shares_latent_space(current, refined):
        raise InputError(
            vae_path,
            "its encoder or scaling factor differs from the model's, so the model's latents would not fit it",
            "refine the decoder only (train_encoder false, init_from the model)",
        )
    return refined, correction
