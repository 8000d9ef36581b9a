"""Tiny models and training configs made in code, for the model, training, generation and CLI tests.

    from tests.fake_models import tiny_model_config, save_tiny_model, save_tiny_autoencoder

Sizes are the smallest diffusers accepts (two 8/16-channel autoencoder levels, a 16/32-channel UNet), so a
forward pass takes milliseconds; weights are untrained, which is all the property tests need.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from terrasynth.models.embedded import (
    AutoencoderConfig,
    DenoiserConfig,
    EmbeddedDiffusionModel,
    EmbeddedModelConfig,
)

TINY_AUTOENCODER = AutoencoderConfig((8, 16), 4, 1)  # 2× down-sampling
TINY_DENOISER = DenoiserConfig((16, 32), 1, (1,), 8, 8)  # 2× down-sampling, attention on the second level
SCENE_CLASSES = ("forest", "river_lake", "resident")


def tiny_model_config(**changes) -> EmbeddedModelConfig:
    """A latent model with the LandCover.ai layout classes; ``size_multiple`` is 4."""
    config = EmbeddedModelConfig(autoencoder=TINY_AUTOENCODER, denoiser=TINY_DENOISER, name="tiny-test-model")
    return dataclasses.replace(config, **changes)


def tiny_model(seed: int = 0, **changes) -> EmbeddedDiffusionModel:
    torch.manual_seed(seed)
    return EmbeddedDiffusionModel(tiny_model_config(**changes)).eval()


def save_tiny_model(directory: str | Path, seed: int = 0, **changes) -> Path:
    """An untrained tiny model folder, as ``EmbeddedDiffusionModel.save_pretrained`` writes it."""
    directory = Path(directory)
    tiny_model(seed, **changes).save_pretrained(directory)
    return directory


def save_tiny_autoencoder(directory: str | Path, seed: int = 0) -> Path:
    """An untrained tiny ``AutoencoderKL`` folder (config.json + safetensors), as train-autoencoder writes."""
    directory = Path(directory)
    torch.manual_seed(seed)
    TINY_AUTOENCODER.build().save_pretrained(directory, safe_serialization=True)
    return directory


class FakeTextEncoder:
    """Stands in for MiniLM: a fixed pseudo-random unit vector per prompt (no model to load)."""

    def __init__(self, dim: int = 384):
        self.dim = dim

    def encode(self, prompts: list[str]) -> torch.Tensor:
        vectors = []
        for prompt in prompts:
            generator = torch.Generator().manual_seed(sum(prompt.encode()) * 131 + len(prompt))
            vectors.append(torch.nn.functional.normalize(torch.randn(self.dim, generator=generator), dim=0))
        return torch.stack(vectors) if vectors else torch.zeros(0, self.dim)


def tiny_pix2pix_train_config(pairs: str | Path, output_dir: str | Path, **changes):
    """A pix2pix training config that runs in a second on 32-px fake pairs (two steps, 4-channel base)."""
    from terrasynth.train.pix2pix import Pix2PixTrainConfig

    values = dict(split="all", crop=32, batch_size=2, max_steps=2, base_channels=4, depth=3, checkpoint_every=1)
    return Pix2PixTrainConfig(paired_roots=(str(pairs),), output_dir=str(output_dir), **{**values, **changes})


def state_dicts_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
