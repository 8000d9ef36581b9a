"""Small autoencoders of several designs, trained here for minutes on real tiles: a detection training family.

The ``aligned`` family passes real tiles through the embedded model's own autoencoders. A detector that learns
"decoder texture" from those alone has seen one architecture. These are others: the up-sampling layers that leave
generator traces differ (nearest + convolution as in Stable Diffusion's VAE, transposed convolution as in GANs,
sub-pixel convolution, bilinear + convolution), and so do the down-sampling factor and the number of latent
channels. They are weak (a few minutes of training on two CPU cores): their round trips are matched to the tile's
colour, so that they look like the tile and differ from it in how a decoder redraws texture.

    python benchmarks/detection_sets.py ... --small-autoencoders 80      # trains them once, then round-trips tiles
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclasses.dataclass(frozen=True)
class SmallAutoencoderConfig:
    name: str
    upsampling: str  # nearest | transposed | pixelshuffle | bilinear
    stages: int  # down-sampling by 2 ** stages
    latent_channels: int
    width: int
    steps: int = 800
    batch_size: int = 16
    crop: int = 64
    learning_rate: float = 2e-3
    seed: int = 0


DESIGNS = (
    SmallAutoencoderConfig("nearest-f4-c4", "nearest", 2, 4, 48),
    SmallAutoencoderConfig("transposed-f4-c8", "transposed", 2, 8, 48),
    SmallAutoencoderConfig("pixelshuffle-f8-c16", "pixelshuffle", 3, 16, 48),
    SmallAutoencoderConfig("bilinear-f4-c3", "bilinear", 2, 3, 32),
)


def _up(kind: str, channels: int) -> nn.Module:
    if kind == "nearest":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1))
    if kind == "bilinear":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
    if kind == "transposed":
        return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
    if kind == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2))
    raise ValueError(f"unknown up-sampling {kind!r}")


class SmallAutoencoder(nn.Module):
    def __init__(self, config: SmallAutoencoderConfig):
        super().__init__()
        w = config.width
        down = [nn.Conv2d(3, w, 3, padding=1), nn.SiLU()]
        for _ in range(config.stages):
            down += [nn.Conv2d(w, w, 4, stride=2, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*down, nn.Conv2d(w, config.latent_channels, 1))
        up = [nn.Conv2d(config.latent_channels, w, 3, padding=1), nn.SiLU()]
        for _ in range(config.stages):
            up += [_up(config.upsampling, w), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU()]
        self.decoder = nn.Sequential(*up, nn.Conv2d(w, 3, 3, padding=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """N×3×H×W in [0, 1] (H, W multiples of the down-sampling factor) -> the round trip, in [0, 1]."""
        return (self.decoder(self.encoder(images * 2 - 1)) + 1).div(2).clamp(0, 1)


def _crops(tiles: list[np.ndarray], config: SmallAutoencoderConfig, rng: np.random.Generator) -> torch.Tensor:
    batch = []
    for index in rng.integers(0, len(tiles), config.batch_size):
        tile = tiles[index]
        r = int(rng.integers(0, tile.shape[0] - config.crop + 1))
        c = int(rng.integers(0, tile.shape[1] - config.crop + 1))
        batch.append(tile[r : r + config.crop, c : c + config.crop])
    return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0


def train_small_autoencoder(config: SmallAutoencoderConfig, tiles: list[np.ndarray], folder: Path) -> SmallAutoencoder:
    """Train on random crops of ``tiles`` (H×W×3 uint8) with an L1 loss, or load the weights ``folder`` already
    holds for this exact config."""
    weights, record = folder / "weights.safetensors", folder / "config.json"
    model = SmallAutoencoder(config)
    if weights.is_file() and record.is_file() and json.loads(record.read_text()) == dataclasses.asdict(config):
        model.load_state_dict(load_file(weights))
        return model.eval()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    for _ in range(config.steps):
        batch = _crops(tiles, config, rng)
        loss = (model(batch) - batch).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.tmp.safetensors"))
    (folder / "weights.tmp.safetensors").replace(weights)
    record.write_text(json.dumps(dataclasses.asdict(config), indent=1))
    return model.eval()


@torch.no_grad()
def small_round_trip(model: SmallAutoencoder, image: np.ndarray, factor: int) -> np.ndarray:
    """The round trip of an H×W×3 uint8 image, cropped to a multiple of ``factor``, each channel's mean and spread
    matched to the image's. Minutes of training leave a global colour cast (a forest turned grey-brown); matched,
    colour is no cue, and what is left is how the decoder redraws texture."""
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    source = np.array(image[:height, :width], dtype=np.float64)
    x = torch.from_numpy(source / 255.0).permute(2, 0, 1)[None].float()
    out = model(x)[0].permute(1, 2, 0).double().numpy() * 255
    mean, spread = out.mean((0, 1)), out.std((0, 1)) + 1e-6
    matched = (out - mean) / spread * source.std((0, 1)) + source.mean((0, 1))
    return np.clip(np.rint(matched), 0, 255).astype(np.uint8)
