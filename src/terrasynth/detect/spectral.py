"""Spectral detector: the azimuthally averaged power spectrum of a tile, and a logistic regression on it.

Up-sampling layers (transposed convolutions, nearest/bilinear up-sampling) leave periodic artefacts and a
distorted high-frequency tail in the power spectrum of generated images (Durall et al., "Watch your Up-Convolution",
CVPR 2020; Dzanic et al., NeurIPS 2020). The 1-D feature is the log power averaged over rings of equal spatial
frequency, after removing the mean and applying a Hann window; the classifier is a standardised logistic regression
(scikit-learn to train, numpy to score, safetensors to store).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .base import Detector


@functools.lru_cache(maxsize=8)
def _rings(size: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    freq = np.fft.fftshift(np.fft.fftfreq(size))
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.sqrt(fx**2 + fy**2) / 0.5  # 1.0 at the Nyquist frequency along an axis
    index = np.minimum((radius * bins).astype(int), bins)  # corners beyond Nyquist share the last extra bin
    counts = np.bincount(index.ravel(), minlength=bins + 1)
    window = np.outer(np.hanning(size), np.hanning(size))
    return index.ravel(), counts, window


def azimuthal_spectrum(tile: np.ndarray, bins: int = 32) -> np.ndarray:
    """Log power spectrum of a square uint8 tile's grey level, averaged over ``bins`` rings (DC to Nyquist) plus
    the corner ring beyond Nyquist; ``bins + 1`` values."""
    grey = tile.astype(np.float32).mean(axis=2) / 255.0
    index, counts, window = _rings(grey.shape[0], bins)
    grey = (grey - grey.mean()) * window
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey))) ** 2
    rings = np.bincount(index, weights=power.ravel(), minlength=bins + 1) / np.maximum(counts, 1)
    return np.log(rings + 1e-10)


class SpectralDetector(Detector):
    def __init__(self, config):
        super().__init__(config)
        width = config.bins + 1
        self.mean = np.zeros(width)
        self.scale = np.ones(width)
        self.coef = np.zeros(width)
        self.intercept = 0.0

    def features(self, tiles: list[np.ndarray]) -> np.ndarray:
        return np.stack([azimuthal_spectrum(t, self.config.bins) for t in tiles])

    def _fit_tiles(self, tiles, labels):
        from sklearn.linear_model import LogisticRegression

        x = self.features(tiles)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-6
        model = LogisticRegression(C=1.0, max_iter=2000)
        model.fit((x - self.mean) / self.scale, labels)
        self.coef, self.intercept = model.coef_[0], float(model.intercept_[0])

    def _score_tiles(self, tiles):
        z = (self.features(tiles) - self.mean) / self.scale @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def state_dict(self):
        return {
            "mean": torch.from_numpy(np.asarray(self.mean, np.float64)),
            "scale": torch.from_numpy(np.asarray(self.scale, np.float64)),
            "coef": torch.from_numpy(np.asarray(self.coef, np.float64)),
            "intercept": torch.tensor([self.intercept], dtype=torch.float64),
        }

    def load_state_dict(self, state):
        width = self.config.bins + 1
        for name in ("mean", "scale", "coef"):
            if tuple(state[name].shape) != (width,):
                raise KeyError(f"{name} has shape {tuple(state[name].shape)}, expected ({width},)")
        self.mean, self.scale, self.coef = (state[k].numpy() for k in ("mean", "scale", "coef"))
        self.intercept = float(state["intercept"][0])
