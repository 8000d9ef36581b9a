"""pix2pix (Isola et al. 2017): a U-Net generator from layout to image and a PatchGAN discriminator.

The classic peer for map → satellite translation, used here as a baseline. CPU-sized: ``base_channels=32`` and
``depth`` down-sampling levels (7 reaches 2×2 at 256 px; the paper's 8 levels and 64 channels reach 1×1). The
generator is fully convolutional (train on crops, generate at any multiple of 2**depth). Instance norm replaces
the paper's batch norm at batch size 1 (they coincide there, and it behaves the same at test time). Dropout in
the three innermost decoder levels stays the only noise source, as in the paper; it is off at inference
(``eval()``), which makes the baseline deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import load_config, save_config
from ..errors import InputError
from ..files import atomic_path

WEIGHTS_NAME = "generator.safetensors"
CONFIG_NAME = "config.json"
CLASSES_NAME = "classes.json"  # the layout class table, for generating from mask files and maps


@dataclass(frozen=True)
class Pix2PixConfig:
    num_classes: int
    class_names: tuple[str, ...] = ()
    base_channels: int = 32
    depth: int = 6
    max_channels: int = 256
    disc_channels: int = 32
    disc_layers: int = 3
    dropout: float = 0.5

    def __post_init__(self):
        if self.num_classes < 2 or self.depth < 2 or self.base_channels < 1:
            raise ValueError("pix2pix needs num_classes >= 2, depth >= 2, base_channels >= 1")

    @property
    def size_multiple(self) -> int:
        return 2**self.depth


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class UNetGenerator(nn.Module):
    """One-hot layout (B×K×H×W) → image B×3×H×W in [0, 1]."""

    def __init__(self, config: Pix2PixConfig):
        super().__init__()
        self.config = config
        widths = [min(config.base_channels * 2**i, config.max_channels) for i in range(config.depth)]
        self.down = nn.ModuleList()
        channels = config.num_classes
        for i, width in enumerate(widths):
            layers = [nn.Conv2d(channels, width, 4, 2, 1, bias=i == 0)]
            if 0 < i < config.depth - 1:
                layers.append(_norm(width))
            self.down.append(nn.Sequential(*layers))
            channels = width
        self.up = nn.ModuleList()
        for i in reversed(range(config.depth)):
            out_channels = widths[i - 1] if i > 0 else 3
            in_channels = widths[i] * (1 if i == config.depth - 1 else 2)
            layers: list[nn.Module] = [nn.ReLU(True), nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1)]
            if i > 0:
                layers.append(_norm(out_channels))
                if i >= config.depth - 3 and config.dropout > 0:
                    layers.append(nn.Dropout(config.dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        skips, x = [], onehot
        for index, block in enumerate(self.down):
            x = block(x if index == 0 else F.leaky_relu(x, 0.2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = block(x)
            if skips:
                x = torch.cat([x, skips.pop()], 1)
        return (torch.tanh(x) + 1) / 2

    def layout_to_onehot(self, layout: torch.Tensor) -> torch.Tensor:
        if layout.dim() == 2:
            layout = layout[None]
        return (
            F.one_hot(layout.long().clamp(0, self.config.num_classes - 1), self.config.num_classes)
            .permute(0, 3, 1, 2)
            .float()
        )

    @torch.no_grad()
    def generate(self, layout: torch.Tensor, dropout: bool = False) -> torch.Tensor:
        """H×W layout → 3×H×W image; the layout is padded (reflect) to a multiple of 2**depth and cropped back.
        ``dropout=True`` keeps dropout on as the noise source (Isola et al.), drawn from torch's global RNG."""
        self.eval()
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.train(dropout)
        height, width = layout.shape[-2:]
        multiple = self.config.size_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = self.layout_to_onehot(layout)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self(x)[0, :, :height, :width]


class PatchDiscriminator(nn.Module):
    """70×70 PatchGAN (with ``disc_layers=3``): (one-hot layout, image) → a map of real/fake logits."""

    def __init__(self, config: Pix2PixConfig):
        super().__init__()
        width = config.disc_channels
        layers: list[nn.Module] = [nn.Conv2d(config.num_classes + 3, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        channels = width
        for i in range(1, config.disc_layers + 1):
            out_channels = width * min(2**i, 8)
            stride = 2 if i < config.disc_layers else 1
            layers += [
                nn.Conv2d(channels, out_channels, 4, stride, 1, bias=False),
                _norm(out_channels),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, onehot: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([onehot, image * 2 - 1], 1))


def save_pix2pix(generator: UNetGenerator, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """``directory/config.json`` + ``directory/generator.safetensors`` (``dtype=torch.float16`` halves the file;
    loading casts back to float32)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, tmp)
    save_config(generator.config, directory / CONFIG_NAME)
    return directory


def load_pix2pix(directory: str | Path) -> UNetGenerator:
    directory = Path(directory)
    if not (directory / WEIGHTS_NAME).is_file():
        raise InputError(directory, f"no {WEIGHTS_NAME} here", "train one with `terrasynth train-pix2pix`")
    generator = UNetGenerator(load_config(Pix2PixConfig, directory / CONFIG_NAME))
    generator.load_state_dict(load_file(directory / WEIGHTS_NAME))
    return generator.eval()
