"""The ``probe`` detector: a linear probe on forensic tile features, calibrated as a p-value against real imagery.

* **Features** (:mod:`terrasynth.detect.features`): frozen EfficientNet-Lite0 channel means at six depths and
  high-pass residual statistics, per native-resolution tile of ``input_size`` pixels.
* **Probe**: a standardised, L2-regularised logistic regression on tiles (UnivFD's recipe, Ojha et al. 2023).
  Training tiles of real images include everyday processing (JPEG, resizing, sharpening, colour edits,
  screenshots), labelled *real*; synthetic images get the same processing, so processing is no cue.
* **Image score**: the mean of the top quarter of the image's tile logits, so that a tile with a synthetic region
  (inpainting, splicing) is not averaged away by its real surroundings.
* **Calibration** (split conformal): the image logits of held-out real images, kept sorted in the weights file.
  An image's p-value is the share of those real images that scored at least as high; *synthetic* means
  p ≤ ``synthetic_p``, *uncertain* p ≤ ``uncertain_p``, *real* above. With exchangeable real images the rate of
  false *synthetic* verdicts is at most ``synthetic_p``.
* **Domain check**: a few descriptors of how the image was captured and stored (residual energy, high- and
  low-frequency share, JPEG block grid, chroma residual) against the calibration images' median and spread. An
  image more than ``domain_z`` robust standard deviations away on any descriptor is *outside the calibrated
  domain*: its p-value is reported, but the verdict is not *synthetic* or *real* on its strength.
"""

from __future__ import annotations

import numpy as np
import torch

from .detector import Detector
from .features import FEATURE_WIDTH, tile_features, tile_grid

# residual-feature columns (after the 768 deep ones) that describe capture and storage, not content
_RESIDUAL = 768
DOMAIN_NAMES = ("residual energy", "high-frequency share", "low-frequency share", "8-px row grid", "8-px column grid")


def domain_descriptors(features: np.ndarray) -> np.ndarray:
    """Per-tile capture/storage descriptors from ``tile_features`` rows (N × 818 → N × 5)."""
    spectrum = features[:, _RESIDUAL : _RESIDUAL + 16]
    energy = features[:, _RESIDUAL + 16]
    cols8 = features[:, _RESIDUAL + 29 : _RESIDUAL + 37]  # sorted phase energies across columns, period 8
    rows8 = features[:, _RESIDUAL + 37 : _RESIDUAL + 45]
    return np.stack(
        [
            energy,
            spectrum[:, 12:].mean(1),
            spectrum[:, 1:4].mean(1),
            rows8[:, -1] - rows8[:, 0],
            cols8[:, -1] - cols8[:, 0],
        ],
        1,
    )


def top_quarter_mean(values: np.ndarray) -> float:
    values = np.sort(np.asarray(values, np.float64))[::-1]
    return float(values[: max(1, len(values) // 4)].mean())


class ProbeDetector(Detector):
    def __init__(self, config):
        super().__init__(config)
        width = FEATURE_WIDTH
        self.mean = np.zeros(width)
        self.scale = np.ones(width)
        self.coef = np.zeros(width)
        self.intercept = 0.0
        self.calibration = np.zeros(0)
        self.domain_centre = np.zeros(len(DOMAIN_NAMES))
        self.domain_spread = np.ones(len(DOMAIN_NAMES))

    # tiles and features -----------------------------------------------------------------------------------------

    def tiles(self, image: np.ndarray) -> list[np.ndarray]:
        """Non-overlapping ``input_size`` tiles over the whole image, at most ``max_tiles`` (evenly spread)."""
        size = self.config.input_size
        height, width = image.shape[:2]
        self.check_size(width, height)
        corners = tile_grid(height, width, size, size)
        if len(corners) > self.config.max_tiles:
            keep = np.linspace(0, len(corners) - 1, self.config.max_tiles).round().astype(int)
            corners = [corners[i] for i in keep]
        return [image[r : r + size, c : c + size] for r, c in corners]

    def image_features(self, image: np.ndarray) -> np.ndarray:
        return tile_features(np.stack(self.tiles(image)))

    def _training_tiles(self, image: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        out = self.tiles(image)
        if self.config.augment:
            from .perturb import everyday_processing

            processed, _ = everyday_processing(image, rng, self.config.input_size)
            out += self.tiles(processed)
        return out

    # training ---------------------------------------------------------------------------------------------------

    def _fit_tiles(self, tiles, labels):
        self.fit_features(tile_features(np.stack(tiles)), labels)

    def fit_features(self, features: np.ndarray, labels: np.ndarray) -> ProbeDetector:
        from sklearn.linear_model import LogisticRegression

        features = np.asarray(features, np.float64)
        self.mean, self.scale = features.mean(0), features.std(0) + 1e-6
        model = LogisticRegression(C=self.config.probe_c, max_iter=3000, class_weight="balanced")
        model.fit((features - self.mean) / self.scale, labels)
        self.coef, self.intercept = model.coef_[0], float(model.intercept_[0])
        return self

    def tile_logits(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, np.float64) - self.mean) / self.scale @ self.coef + self.intercept

    def image_logit(self, features: np.ndarray) -> float:
        return top_quarter_mean(self.tile_logits(features))

    # scoring ----------------------------------------------------------------------------------------------------

    def logits(self, images: list[np.ndarray]) -> np.ndarray:
        return np.array([self.image_logit(self.image_features(x)) for x in images])

    def score(self, images: list[np.ndarray]) -> np.ndarray:
        """Probability-like score per image: the sigmoid of its logit (compare with ``threshold``; the calibrated
        answer is :meth:`assess`)."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(images), -50, 50)))

    def calibrate(self, real: list[np.ndarray], fpr: float = 0.01) -> ProbeDetector:
        features = [self.image_features(x) for x in real]
        return self.calibrate_features(features, fpr)

    def calibrate_features(self, features: list[np.ndarray], fpr: float | None = None) -> ProbeDetector:
        """Keep the image logits and domain descriptors of held-out real images (each an array of tile features)."""
        import dataclasses

        fpr = self.config.synthetic_p if fpr is None else fpr
        logits = np.array([self.image_logit(f) for f in features])
        self.calibration = np.sort(logits)
        descriptors = np.stack([domain_descriptors(f).mean(0) for f in features])
        self.domain_centre = np.median(descriptors, 0)
        self.domain_spread = 1.4826 * np.median(np.abs(descriptors - self.domain_centre), 0) + 1e-6
        threshold_logit = self.logit_at_p(fpr)
        threshold = float(1.0 / (1.0 + np.exp(-np.clip(threshold_logit, -50, 50))))
        point = (
            f"p <= {fpr:g} against {len(logits)} held-out real images (split conformal; "
            f"score threshold {threshold:.4g})"
        )
        self.config = dataclasses.replace(self.config, threshold=threshold, operating_point=point)
        return self

    def logit_at_p(self, p: float) -> float:
        """The smallest logit whose p-value is at most ``p``."""
        n = len(self.calibration)
        if n == 0:
            return 0.0
        # p(x) = (1 + #{cal >= x}) / (n + 1) <= p  <=>  #{cal >= x} <= p (n + 1) - 1
        allowed = int(np.floor(p * (n + 1) - 1))
        if allowed < 0:
            return float(self.calibration[-1]) + 1e-9
        return float(self.calibration[n - 1 - allowed]) + 1e-9 if allowed < n else float("-inf")

    def p_value(self, logit: float) -> float:
        n = len(self.calibration)
        if n == 0:
            return float("nan")
        at_least = n - int(np.searchsorted(self.calibration, logit, side="left"))
        return (1 + at_least) / (n + 1)

    def domain_z(self, features: np.ndarray) -> np.ndarray:
        return (domain_descriptors(features).mean(0) - self.domain_centre) / self.domain_spread

    def assess_features(self, features: np.ndarray) -> dict:
        logit = self.image_logit(features)
        p = self.p_value(logit)
        z = self.domain_z(features)
        worst = int(np.argmax(np.abs(z)))
        in_domain = bool(np.abs(z[worst]) <= self.config.domain_z)
        if not in_domain:
            verdict = "outside calibrated domain"
        elif p <= self.config.synthetic_p:
            verdict = "synthetic"
        elif p <= self.config.uncertain_p:
            verdict = "uncertain"
        else:
            verdict = "real"
        result = {
            "score": float(1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))),
            "p_value": float(p),
            "verdict": verdict,
            "in_domain": in_domain,
        }
        if not in_domain:
            result["domain_detail"] = f"{DOMAIN_NAMES[worst]} {z[worst]:+.1f} robust s.d. from the calibration images"
        return result

    def assess(self, image: np.ndarray) -> dict:
        """The calibrated answer for one image: score, p-value against real imagery, verdict, domain check."""
        return self.assess_features(self.image_features(image))

    # localisation -----------------------------------------------------------------------------------------------

    def localize(self, image: np.ndarray, stride: int | None = None) -> np.ndarray:
        """Per-pixel probability that the pixel is synthetic, at the image's size: every ``stride`` pixels a tile
        is scored, its calibrated probability spread over its pixels, and overlapping tiles averaged.

        The tile probability is the p-value's complement mapped through the operating point: 0.5 exactly at the
        shipped threshold, so the binary mask at 0.5 matches the detector's verdict per tile."""
        size = self.config.input_size
        stride = stride or max(8, size // 4)
        height, width = image.shape[:2]
        self.check_size(width, height)
        corners = tile_grid(height, width, size, stride)
        total = np.zeros((height, width), np.float64)
        count = np.zeros((height, width), np.float64)
        for start in range(0, len(corners), 256):
            chunk = corners[start : start + 256]
            tiles = np.stack([image[r : r + size, c : c + size] for r, c in chunk])
            logits = self.tile_logits(tile_features(tiles))
            for (r, c), logit in zip(chunk, logits):
                total[r : r + size, c : c + size] += logit
                count[r : r + size, c : c + size] += 1
        pixel_logits = total / np.maximum(count, 1)
        threshold = self.logit_at_p(self.config.synthetic_p)
        spread = max(float(np.std(self.calibration)), 1e-3) if len(self.calibration) else 1.0
        return (1.0 / (1.0 + np.exp(-np.clip((pixel_logits - threshold) / spread * 4, -50, 50)))).astype(np.float32)

    # files ------------------------------------------------------------------------------------------------------

    def state_dict(self):
        as_tensor = lambda x: torch.from_numpy(np.asarray(x, np.float64).copy())  # noqa: E731
        return {
            "mean": as_tensor(self.mean),
            "scale": as_tensor(self.scale),
            "coef": as_tensor(self.coef),
            "intercept": as_tensor([self.intercept]),
            "calibration": as_tensor(self.calibration),
            "domain_centre": as_tensor(self.domain_centre),
            "domain_spread": as_tensor(self.domain_spread),
        }

    def load_state_dict(self, state):
        for name in ("mean", "scale", "coef"):
            if tuple(state[name].shape) != (FEATURE_WIDTH,):
                raise KeyError(f"{name} has shape {tuple(state[name].shape)}, expected ({FEATURE_WIDTH},)")
        self.mean, self.scale, self.coef = (state[k].numpy() for k in ("mean", "scale", "coef"))
        self.intercept = float(state["intercept"][0])
        self.calibration = np.sort(state["calibration"].numpy())
        self.domain_centre = state["domain_centre"].numpy()
        self.domain_spread = state["domain_spread"].numpy()
