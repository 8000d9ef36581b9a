"""The decoder's colour correction: an offset added to every decoded image, predicted from its latents.

The decoder's GroupNorm layers normalise each feature map over the whole image, so a tile that is one flat
surface (a lake) loses much of its absolute colour on the way through, and the decoder draws it nearer the
average colour (docs/default_model.md, stage 6). The latents still carry that colour, so a small model fitted on
training round trips (encode → decode, posterior mode) can give it back:

- ``GlobalColourCorrection``: a 3×(C+1) matrix maps the latent's spatial mean (and 1) to the mean colour the
  decoder missed; one shift per image. Fitted by least squares.
- ``LocalColourCorrection``: a per-latent-pixel MLP maps the latent, its local means over wider windows and
  the image's latent mean and std to the colour the decoder missed *there*, at latent resolution; the offset map
  is up-sampled bilinearly. It corrects an image where a dark lake meets a bright field, which one shift per
  image cannot. Fitted by Adam on the round trips' residuals, smoothed to latent resolution so that it learns
  colour, not texture.

Both live beside the decoder weights, and outside the decoder's weights file, which stays a plain diffusers one:
``colour_correction.json`` holds the kind and settings (and a global correction's 15 numbers), and a local
correction's weights go in ``colour_correction.safetensors`` (float32). In a model the correction is a submodule of
its own, ``EmbeddedDiffusionModel.colour_correction``, applied as a named step of ``decode_latents``; beside a
lone autoencoder it is passed explicitly (``load_autoencoder_and_correction``, ``save_autoencoder``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..errors import InputError
from ..files import atomic_path, read_json, write_json_atomic

COLOUR_CORRECTION_NAME = "colour_correction.json"
COLOUR_CORRECTION_WEIGHTS_NAME = "colour_correction.safetensors"
CORRECTION_KINDS = ("global", "local")


class GlobalColourCorrection(nn.Module):
    kind = "global"

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix.float())

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """B×C×h×w unscaled latents → B×3×1×1 colour shift ([0, 1] units)."""
        return (_mean_and_one(latents) @ self.matrix.T)[:, :, None, None]

    def to_json(self) -> dict:
        return {"kind": self.kind, "matrix": self.matrix.tolist(), "input": "[spatial mean of latents, 1]"}


class LocalColourCorrection(nn.Module):
    kind = "local"

    def __init__(self, latent_channels: int, hidden: int = 64, windows: tuple[int, ...] = (1, 9, 25)):
        super().__init__()
        if any(w < 1 or w % 2 == 0 for w in windows):
            raise ValueError(f"windows must be odd positive sizes, got {windows}")
        self.latent_channels, self.hidden, self.windows = latent_channels, hidden, tuple(windows)
        features = latent_channels * (len(windows) + 2)
        # One MLP per latent pixel (on its feature vector, channels last).
        self.layers = nn.Sequential(
            nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3)
        )
        nn.init.zeros_(self.layers[-1].weight)  # starts as no correction at all
        nn.init.zeros_(self.layers[-1].bias)

    def features(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.float()
        local = [_window_mean(latents, w) for w in self.windows]
        whole = [latents.mean((2, 3), keepdim=True), latents.std((2, 3), keepdim=True)]
        return torch.cat([*local, *(w.expand_as(latents) for w in whole)], 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """B×C×h×w unscaled latents → B×3×h×w colour offset map ([0, 1] units) at latent resolution."""
        return self.layers(self.features(latents).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "latent_channels": self.latent_channels,
            "hidden": self.hidden,
            "windows": list(self.windows),
            "weights": COLOUR_CORRECTION_WEIGHTS_NAME,
        }


ColourCorrection = GlobalColourCorrection | LocalColourCorrection


def _window_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the size×size window around each pixel, over the pixels inside the image; separable, so a wide
    window costs 2·size additions per pixel, not size²."""
    if size == 1:
        return x
    x = F.avg_pool2d(x, (size, 1), 1, (size // 2, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, size), 1, (0, size // 2), count_include_pad=False)


def _mean_and_one(latents: torch.Tensor) -> torch.Tensor:
    means = latents.float().mean((2, 3))
    return torch.cat([means, torch.ones_like(means[:, :1])], 1)


def apply_colour_correction(correction: ColourCorrection | None, latents: torch.Tensor, images: torch.Tensor):
    """``images`` (decoded from unscaled ``latents``, [0, 1]) shifted by the correction's offset map."""
    if correction is None:
        return images
    correction = correction.to(latents.device)
    with torch.no_grad():
        offset = correction(latents)
    if offset.shape[-1] > 1 or offset.shape[-2] > 1:
        offset = F.interpolate(offset, images.shape[-2:], mode="bilinear", align_corners=False)
    return images + offset.to(images.dtype)


# Fitting -------------------------------------------------------------------------------------------------------


@torch.no_grad()
def round_trip_residuals(vae, images) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled posterior-mode latents of an iterable of B×3×H×W [0, 1] batches, and what their uncorrected
    decodes missed (image − decode), averaged down to latent resolution."""
    latents, residuals = [], []
    for batch in images:
        batch = batch.to(vae.device, vae.dtype)
        batch_latents = vae.encode(batch * 2 - 1).latent_dist.mode()
        decoded = ((vae.decode(batch_latents).sample + 1) / 2).clamp(0, 1)
        factor = batch.shape[-1] // batch_latents.shape[-1]
        latents.append(batch_latents.float().cpu())
        residuals.append(F.avg_pool2d((batch - decoded).float(), factor).cpu())
    return torch.cat(latents), torch.cat(residuals)


def fit_global_correction(latents: torch.Tensor, residual_means: torch.Tensor, ridge: float = 1e-4):
    x, y = _mean_and_one(latents).double(), residual_means.double()
    if len(x) < x.shape[1]:
        raise InputError(None, f"a colour correction needs at least {x.shape[1]} images, got {len(x)}")
    gram = x.T @ x + ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
    return GlobalColourCorrection(torch.linalg.solve(gram, x.T @ y).T.float())


def fit_local_correction(
    latents: torch.Tensor,
    residuals: torch.Tensor,
    steps: int = 3000,
    batch_size: int = 4096,
    learning_rate: float = 3e-3,
    seed: int = 0,
    hidden: int = 64,
    progress: bool = False,
) -> LocalColourCorrection:
    """``residuals``: B×3×h×w, what the decoder missed (image − decode), already at latent resolution. Each
    step fits ``batch_size`` latent pixels drawn at random from all images."""
    if len(latents) < 2:
        raise InputError(None, f"a local colour correction needs at least 2 images, got {len(latents)}")
    if residuals.shape[0] != latents.shape[0] or residuals.shape[-2:] != latents.shape[-2:]:
        raise ValueError(f"residuals {tuple(residuals.shape)} do not match latents {tuple(latents.shape)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        correction = LocalColourCorrection(latents.shape[1], hidden)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(correction.parameters(), learning_rate)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        with torch.no_grad():  # the features are fixed: computed once, as one row per latent pixel
            features = torch.cat([correction.features(chunk) for chunk in latents.split(64)])
            features = features.permute(0, 2, 3, 1).flatten(0, 2)
            targets = residuals.float().permute(0, 2, 3, 1).flatten(0, 2)
        for _ in tqdm(range(steps), disable=not progress, desc="colour correction"):
            index = torch.randint(0, len(features), (min(batch_size, len(features)),), generator=generator)
            loss = F.mse_loss(correction.layers(features[index]), targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return correction.eval().requires_grad_(False)


def fit_colour_correction(vae, images, kind: str = "global", **options) -> ColourCorrection:
    """Fit a correction of ``kind`` on the round trips (posterior mode, no correction) of ``images``: an
    iterable of B×3×H×W [0, 1] tensors, at the size images will be generated at (GroupNorm statistics depend
    on it)."""
    if kind not in CORRECTION_KINDS:
        raise ValueError(f"colour correction kind must be one of {CORRECTION_KINDS}, got {kind!r}")
    latents, residuals = round_trip_residuals(vae, images)
    if kind == "global":
        return fit_global_correction(latents, residuals.mean((2, 3)), **options)
    # Smoothed a little beyond latent resolution: the correction is for colour, not for texture.
    return fit_local_correction(latents, F.avg_pool2d(residuals, 3, 1, 1, count_include_pad=False), **options)


# Saving and loading -------------------------------------------------------------------------------------------


def save_colour_correction(correction: ColourCorrection | None, folder: Path) -> None:
    """Write ``correction`` beside the decoder weights in ``folder``; None removes any correction saved there."""
    path = Path(folder) / COLOUR_CORRECTION_NAME
    weights_path = Path(folder) / COLOUR_CORRECTION_WEIGHTS_NAME
    if correction is None or correction.kind != "local":
        weights_path.unlink(missing_ok=True)
    if correction is None:
        path.unlink(missing_ok=True)
        return
    if correction.kind == "local":
        state = {name: value.detach().float().contiguous() for name, value in correction.state_dict().items()}
        with atomic_path(weights_path) as tmp:
            save_file(state, str(tmp))
    write_json_atomic(path, correction.to_json())


def load_colour_correction(folder: Path, latent_channels: int) -> ColourCorrection | None:
    """The correction saved in ``folder`` (float32), or None where there is none."""
    path = Path(folder) / COLOUR_CORRECTION_NAME
    if not path.is_file():
        return None
    return correction_from_json(read_json(path), latent_channels, path)


def _local_state(data: dict, path: Path) -> dict[str, torch.Tensor]:
    """A local correction's weights: the safetensors file its JSON names, or (files written before session 11)
    lists of numbers in the JSON itself."""
    if "state" in data:
        return {name: torch.tensor(value, dtype=torch.float32) for name, value in data["state"].items()}
    name = data["weights"]
    if not isinstance(name, str) or Path(name).name != name:
        raise InputError(path, f"'weights' must be a file name beside it, got {name!r}")
    weights_path = path.parent / name
    if not weights_path.is_file():
        raise InputError(weights_path, "missing: the local colour correction's weights", f"named by {path}")
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise InputError(weights_path, f"not a readable safetensors file ({error})") from None


def correction_from_json(data, latent_channels: int, path: Path) -> ColourCorrection:
    kind = data.get("kind", "global") if isinstance(data, dict) else None  # files before "kind" are global
    if kind == "global":
        expected = (3, latent_channels + 1)
        try:
            matrix = torch.tensor(data.get("matrix"), dtype=torch.float32)
        except (TypeError, ValueError):
            matrix = None
        if matrix is None or tuple(matrix.shape) != expected:
            raise InputError(path, f"'matrix' must be a {expected[0]}×{expected[1]} list of numbers")
        return GlobalColourCorrection(matrix)
    if kind == "local":
        try:
            if data["latent_channels"] != latent_channels:
                raise InputError(
                    path, f"made for {data['latent_channels']} latent channels; the autoencoder has {latent_channels}"
                )
            correction = LocalColourCorrection(latent_channels, int(data["hidden"]), tuple(data["windows"]))
            correction.load_state_dict({name: value.float() for name, value in _local_state(data, path).items()})
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise InputError(path, f"not a valid local colour correction ({type(error).__name__}: {error})") from None
        return correction.eval().requires_grad_(False)
    raise InputError(path, f"'kind' must be one of {CORRECTION_KINDS}, got {kind!r}")
