"""A prior over each tile's global colour: the per-channel mean of its latent, drawn from the training tiles
whose layouts have the nearest class shares.

Why: sampled from pure noise, the default denoiser draws tiles whose latent means spread about half as widely
from tile to tile as real tiles' do (docs/default_model.md, session 16), so its water and fields all come out
in middling colours. Every real tile has its own light, season and sensor; the layout does not say which. The
prior draws one from training tiles of the same make-up, and the pipeline starts sampling at a noise level
where the tile's mean is still clearly visible through the noise while its structure is not (SNR of one latent
pixel 0.003, of the 64×64 mean 12, at t = 899 of 1000; 0.0016 and 6.7 at t = 922, where the shipped model
starts with 13 steps), from that mean alone: the denoiser then draws structure and texture from the layout and
prompt, in that colour.

Neighbours are the training tiles within the ``neighbours``-th smallest L1 distance of class shares, ties
included: hundreds of training tiles are all water, and a draw among the first few in file order (one
orthophoto) would give every lake that orthophoto's colour.

The table lives in the model folder as ``mean_prior/mean_prior.safetensors`` (``class_shares`` N×K and
``latent_means`` N×C, float32); its settings are ``EmbeddedModelConfig.mean_prior``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.layouts import class_shares
from ..errors import InputError
from ..files import atomic_path

MEAN_PRIOR_FOLDER = "mean_prior"
MEAN_PRIOR_WEIGHTS_NAME = "mean_prior.safetensors"


@dataclass(frozen=True)
class MeanPriorConfig:
    # How many of the nearest training tiles (ties included) a tile's mean is drawn from.
    neighbours: int = 8
    # Sampling starts at the sampler's first timestep t with t / T <= start, from the drawn mean noised to t.
    start: float = 0.9

    def __post_init__(self):
        if self.neighbours < 1:
            raise ValueError(f"mean prior neighbours must be at least 1, got {self.neighbours}")
        if not (math.isfinite(self.start) and 0.0 < self.start < 1.0):
            raise ValueError(f"mean prior start must be in (0, 1), got {self.start}")


class LatentMeanPrior:
    """``class_shares`` (N×K, each row sums to 1) and ``latent_means`` (N×C, scaled latents) of N training
    tiles."""

    def __init__(self, class_shares: torch.Tensor, latent_means: torch.Tensor):
        class_shares, latent_means = class_shares.float(), latent_means.float()
        if class_shares.dim() != 2 or latent_means.dim() != 2 or len(class_shares) != len(latent_means):
            raise ValueError(
                "class_shares and latent_means must be N×K and N×C with the same N, got "
                f"{tuple(class_shares.shape)} and {tuple(latent_means.shape)}"
            )
        if len(class_shares) == 0:
            raise ValueError("a mean prior needs at least one training tile")
        if not (torch.isfinite(class_shares).all() and torch.isfinite(latent_means).all()):
            raise ValueError("class_shares and latent_means must be finite")
        self.class_shares, self.latent_means = class_shares, latent_means

    def __len__(self) -> int:
        return len(self.latent_means)

    @property
    def num_classes(self) -> int:
        return self.class_shares.shape[1]

    @property
    def latent_channels(self) -> int:
        return self.latent_means.shape[1]

    def pool(self, shares: torch.Tensor, neighbours: int) -> torch.Tensor:
        """Indices of the training tiles within the ``neighbours``-th smallest class-share distance of
        ``shares`` (K), ties included."""
        if shares.shape != (self.num_classes,):
            raise ValueError(f"class shares must have {self.num_classes} entries, got {tuple(shares.shape)}")
        distance = (self.class_shares - shares.float().cpu()).abs().sum(1)
        kth = distance.sort().values[min(neighbours, len(self)) - 1]
        return torch.nonzero(distance <= kth + 1e-6)[:, 0]

    def draw(self, shares: torch.Tensor, neighbours: int, seed: int) -> tuple[int, torch.Tensor]:
        """(training tile index, its latent mean (C)) drawn uniformly from the pool of ``shares``; the same
        ``seed`` draws the same tile."""
        pool = self.pool(shares, neighbours)
        # Its own stream, apart from the sampler noise drawn from the same seed.
        index = int(pool[np.random.default_rng([int(seed), 0x6D65616E]).integers(len(pool))])
        return index, self.latent_means[index]

    # Saving and loading -----------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"class_shares": self.class_shares.contiguous(), "latent_means": self.latent_means.contiguous()}
        with atomic_path(folder / MEAN_PRIOR_WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, folder: str | Path) -> LatentMeanPrior:
        path = Path(folder) / MEAN_PRIOR_WEIGHTS_NAME
        if not path.is_file():
            raise InputError(path, "missing: the model's config names a mean prior", "re-export the model")
        try:
            tensors = load_file(str(path))
            return cls(tensors["class_shares"], tensors["latent_means"])
        except (SafetensorError, OSError) as error:
            raise InputError(path, f"not a readable safetensors file ({error})") from None
        except (KeyError, ValueError) as error:
            raise InputError(path, f"not a valid mean prior ({type(error).__name__}: {error})") from None


@torch.no_grad()
def fit_mean_prior(model, dataset, batch_size: int = 16, progress: bool = True) -> LatentMeanPrior:
    """The prior of ``model`` (an ``EmbeddedDiffusionModel`` with an autoencoder and layouts) over the tiles of
    ``dataset`` (dict samples with ``image`` and ``layout``, all the size the model generates at): each tile's
    posterior-mode latent mean and its layout's class shares."""
    from tqdm.auto import tqdm

    if model.vae is None or model.config.class_table is None:
        raise ValueError("a mean prior needs a latent model that takes layouts")
    if len(dataset) == 0:
        raise ValueError("a mean prior needs at least one training tile")
    num_classes = model.config.num_layout_channels - 1
    shares, means = [], []
    for start in tqdm(range(0, len(dataset), batch_size), disable=not progress, desc="fitting the mean prior"):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = torch.stack([s["image"] for s in samples]).to(model.device)
        shares += [class_shares(s["layout"], num_classes) for s in samples]
        means.append(model.encode_images(images).float().mean((2, 3)).cpu())
    return LatentMeanPrior(torch.stack(shares), torch.cat(means))


__all__ = ["LatentMeanPrior", "MeanPriorConfig", "fit_mean_prior"]
