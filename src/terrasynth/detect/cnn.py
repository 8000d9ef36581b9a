"""CNN detector: ImageNet EfficientNet-Lite0 (offline weights) fine-tuned to tell real tiles from synthetic ones.

The last ``trainable_blocks`` MBConv blocks, the head convolution and a new linear classifier are trained
(batch-norm statistics stay frozen, which suits small CPU batches); tiles are read at native resolution
(Wang et al., "CNN-generated images are surprisingly easy to spot... for now", CVPR 2020, fine-tune an ImageNet
network the same way, with blur and JPEG augmentation for robustness).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from ..models.features import effnet_normalize, load_efficientnet_lite0
from .base import Detector

log = logging.getLogger(__name__)


class _Network(nn.Module):
    def __init__(self, pretrained: bool):
        super().__init__()
        self.net = load_efficientnet_lite0(pretrained)
        self.head = nn.Linear(1280, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.net.extract_features(effnet_normalize(images)).mean((2, 3))
        return self.head(features).squeeze(1)


def _to_tensor(tiles: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255.0


class CNNDetector(Detector):
    def __init__(self, config, pretrained: bool | None = None):
        super().__init__(config)
        self.network = _Network(config.pretrained if pretrained is None else pretrained).eval()

    def _trainable(self) -> list[nn.Parameter]:
        net = self.network.net
        modules = list(net._blocks)[-self.config.trainable_blocks :] if self.config.trainable_blocks else []
        modules += [net._conv_head, self.network.head]
        params = [p for m in modules for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params

    def _fit_tiles(self, tiles, labels):
        torch.manual_seed(self.config.seed)
        rng = np.random.default_rng(self.config.seed)
        optimizer = torch.optim.AdamW(self._trainable(), lr=self.config.learning_rate, weight_decay=1e-4)
        x, y = _to_tensor(tiles), torch.from_numpy(labels).float()
        loss_fn = nn.BCEWithLogitsLoss()
        for epoch in range(self.config.epochs):
            order = rng.permutation(len(x))
            total = 0.0
            for start in range(0, len(x), self.config.batch_size):
                index = torch.from_numpy(order[start : start + self.config.batch_size])
                batch = x[index]
                if rng.random() < 0.5:  # flips keep the spectrum's rings, so they are safe augmentations
                    batch = batch.flip(3)
                loss = loss_fn(self.network(batch), y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
            log.info("cnn detector epoch %d: loss %.4f", epoch + 1, total / len(x))
        self.network.requires_grad_(False).eval()

    @torch.no_grad()
    def _score_tiles(self, tiles):
        x = _to_tensor(tiles)
        out = [torch.sigmoid(self.network(x[i : i + 64])) for i in range(0, len(x), 64)]
        return torch.cat(out).double().numpy()

    def state_dict(self):
        return self.network.state_dict()

    def load_state_dict(self, state):
        self.network.load_state_dict(state)
        self.network.requires_grad_(False).eval()
