"""Land-cover segmenter and scene classifier on the offline EfficientNet-Lite0 backbone.

The segmenter is a small U-Net decoder over EfficientNet-Lite0's multi-scale features: pretrained ImageNet
features make it usable with a few hundred labelled tiles, which is the regime this project studies. It
measures layout fidelity (does a generated image obey its layout?) and is the downstream model of the
segmentation utility experiments. The classifier is the same backbone with a linear head, or a small CNN from
scratch, for scene classification.
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
from .features import ENDPOINT_BLOCKS, effnet_normalize, load_efficientnet_lite0

ENDPOINT_CHANNELS = (16, 24, 40, 112, 320)  # EfficientNet-Lite0 blocks 0, 2, 4, 10, 15
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class SegmenterConfig:
    num_classes: int
    class_names: tuple[str, ...] = ()
    decoder_channels: int = 48
    pretrained: bool = True

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError("a segmenter needs at least two classes")


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int
    class_names: tuple[str, ...] = ()
    backbone: str = "effnet"  # "effnet" (ImageNet EfficientNet-Lite0) or "small_cnn" (from scratch)
    pretrained: bool = True
    dropout: float = 0.2

    def __post_init__(self):
        if self.backbone not in ("effnet", "small_cnn"):
            raise ValueError(f"backbone must be 'effnet' or 'small_cnn', got {self.backbone!r}")


def freeze_batch_norm(module: nn.Module) -> None:
    """Keep a pretrained backbone's batch-norm statistics: fine-tuning batches of a few tiles estimate them badly."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.eval()


class EffNetEncoder(nn.Module):
    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.net = load_efficientnet_lite0(pretrained).requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        freeze_batch_norm(self.net)
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(effnet_normalize(images))))
        features = []
        for index, block in enumerate(net._blocks):
            x = block(x)
            if index in ENDPOINT_BLOCKS:
                features.append(x)
        return features


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(True)
    )


class Segmenter(nn.Module):
    """B×3×H×W in [0, 1] → B×K×H×W class logits (H, W multiples of 32)."""

    def __init__(self, config: SegmenterConfig):
        super().__init__()
        self.config = config
        self.encoder = EffNetEncoder(config.pretrained)
        width = config.decoder_channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in ENDPOINT_CHANNELS)
        self.fuse = nn.ModuleList(_conv(width, width) for _ in ENDPOINT_CHANNELS[:-1])
        self.head = nn.Conv2d(width, config.num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        features = self.encoder(images)
        x = self.lateral[-1](features[-1])
        for level in range(len(features) - 2, -1, -1):
            x = F.interpolate(x, size=features[level].shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse[level](x + self.lateral[level](features[level]))
        return F.interpolate(self.head(x), size=(height, width), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        self.eval()
        return torch.cat([self(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.2):
        super().__init__()
        layers, channels = [], 3
        for multiple in (1, 2, 4, 8):
            layers += [_conv(channels, width * multiple), _conv(width * multiple, width * multiple), nn.MaxPool2d(2)]
            channels = width * multiple
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images * 2 - 1).mean((2, 3)))


class Classifier(nn.Module):
    """B×3×H×W in [0, 1] → B×K logits."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        if config.backbone == "effnet":
            self.net = load_efficientnet_lite0(config.pretrained).requires_grad_(True)
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(1280, config.num_classes))
        else:
            self.net = SmallCNN(config.num_classes, dropout=config.dropout)
            self.head = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.head is not None:
            freeze_batch_norm(self.net)
        return self

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features (1280-d for the EfficientNet backbone)."""
        if self.head is None:
            return self.net.features(images * 2 - 1).mean((2, 3))
        return self.net.extract_features(effnet_normalize(images)).mean((2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return self.net(images)
        return self.head(self.embed(images))


def save_model(model: Segmenter | Classifier, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """``directory/config.json`` + ``directory/model.safetensors``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, tmp)
    save_config(model.config, directory / CONFIG_NAME)
    return directory


def load_model(directory: str | Path) -> Segmenter | Classifier:
    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise InputError(directory, f"no {WEIGHTS_NAME} found", "pickled weights are not loaded; save as safetensors")
    from ..files import read_json

    data = read_json(directory / CONFIG_NAME)
    if "backbone" in data:
        config = load_config(ClassifierConfig, directory / CONFIG_NAME)
        model = Classifier(
            ClassifierConfig(**{**data, "class_names": tuple(data.get("class_names", ())), "pretrained": False})
        )
    else:
        config = load_config(SegmenterConfig, directory / CONFIG_NAME)
        model = Segmenter(
            SegmenterConfig(**{**data, "class_names": tuple(data.get("class_names", ())), "pretrained": False})
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(weights).items()}
    model.load_state_dict(state)
    model.config = config
    return model.eval()
