"""The detector interface: real (0) vs synthetic (1) scores for satellite tiles, whatever the method inside.

A detector reads square tiles of ``input_size`` pixels at the image's native resolution (resampling would erase
the up-sampling fingerprints it looks for): up to ``max_tiles`` tiles spread over the image, whose scores are
averaged. Images smaller than one tile are refused, and so are images above ``max_pixels`` (a stated limit,
checked from the header before decoding). A trained detector is a folder: ``detector.json`` (its config, the
operating point included) and ``model.safetensors``.

The methods (``spectral.py``, ``cnn.py``, ``probe.py``) subclass :class:`Detector` from here; ``detector.py``
builds, loads and trains them, so imports run one way: detector → methods → base.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import config_to_dict
from ..errors import InputError
from ..files import atomic_path, write_json_atomic

METHODS = ("spectral", "cnn", "probe")
FORENSIC_PROBES = ("linear", "boosted")
CONFIG_NAME = "detector.json"
WEIGHTS_NAME = "model.safetensors"
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 × 8000


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Everything that defines a detector; the trained numbers live in the safetensors file beside it."""

    method: str = "spectral"
    input_size: int = 64
    max_tiles: int = 4
    max_pixels: int = DEFAULT_MAX_PIXELS
    threshold: float = 0.5
    operating_point: str = "threshold 0.5 (uncalibrated)"
    augment: bool = True
    seed: int = 0
    # spectral
    bins: int = 32
    # cnn
    pretrained: bool = True
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-4
    trainable_blocks: int = 4
    # probe: L2 strength of the logistic regression, the p-values of the verdicts, the domain check's limit
    probe_c: float = 0.05
    # the forensic probe: "linear" (logistic regression, as the other probes) or "boosted" (shallow trees)
    forensic_probe: str = "linear"
    synthetic_p: float = 0.01
    uncertain_p: float = 0.05
    domain_z: float = 6.0
    trained_on: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.input_size < 16:
            raise ValueError(f"input_size must be at least 16, got {self.input_size}")
        if self.max_tiles < 1 or self.max_pixels < self.input_size**2:
            raise ValueError("max_tiles must be >= 1 and max_pixels at least one tile")
        if self.forensic_probe not in FORENSIC_PROBES:
            raise ValueError(f"forensic_probe must be one of {', '.join(FORENSIC_PROBES)}, got {self.forensic_probe!r}")
        if not 0 < self.synthetic_p <= self.uncertain_p < 1:
            raise ValueError("need 0 < synthetic_p <= uncertain_p < 1")


class Detector:
    """Common interface. Subclasses implement ``_fit_tiles(tiles, labels)`` and ``_score_tiles(tiles)``."""

    def __init__(self, config: DetectorConfig):
        self.config = config

    @property
    def threshold(self) -> float:
        return self.config.threshold

    # tiles ------------------------------------------------------------------------------------------------------

    def check_size(self, width: int, height: int, path: str | Path | None = None) -> None:
        size = self.config.input_size
        if width < size or height < size:
            raise InputError(path, f"image {width}x{height} is smaller than the detector input {size}x{size}")
        if width * height > self.config.max_pixels:
            raise InputError(
                path, f"image {width}x{height} is above the {self.config.max_pixels:,}-pixel limit", "tile it first"
            )

    def tiles(self, image: np.ndarray) -> list[np.ndarray]:
        """Up to ``max_tiles`` native-resolution tiles, evenly spread over the image (the centre one first)."""
        size = self.config.input_size
        height, width = image.shape[:2]
        self.check_size(width, height)
        centre = ((height - size) // 2, (width - size) // 2)
        rows = np.linspace(0, height - size, max(1, min(height // size, 4))).astype(int)
        cols = np.linspace(0, width - size, max(1, min(width // size, 4))).astype(int)
        corners = [centre] + [(r, c) for r in rows for c in cols if (r, c) != centre]
        step = max(1, len(corners) // self.config.max_tiles) if len(corners) > self.config.max_tiles else 1
        chosen = [corners[0]] + corners[1::step][: self.config.max_tiles - 1]
        return [image[r : r + size, c : c + size] for r, c in chosen]

    # training and scoring ---------------------------------------------------------------------------------------

    def fit(self, real: list[np.ndarray], fake: list[np.ndarray]) -> Detector:
        """Train on uint8 H×W×3 images (label 0 real, 1 synthetic)."""
        if not real or not fake:
            raise InputError(None, "training needs both real and synthetic images")
        tiles, labels = [], []
        rng = np.random.default_rng(self.config.seed)
        for label, images in ((0, real), (1, fake)):
            for image in images:
                for tile in self._training_tiles(image, rng):
                    tiles.append(tile)
                    labels.append(label)
        self._fit_tiles(tiles, np.array(labels))
        return self

    def _training_tiles(self, image: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """The image's tiles, and with ``augment`` one randomly perturbed copy (JPEG, resize or blur)."""
        out = self.tiles(image)
        if self.config.augment:
            from .perturb import blur, jpeg, resize

            choice = rng.integers(0, 3)
            if choice == 0:
                copy = jpeg(image, int(rng.integers(50, 96)))
            elif choice == 1:
                scale = float(rng.uniform(0.5, 0.9))
                small = min(image.shape[:2]) * scale
                copy = resize(image, scale) if small >= self.config.input_size else jpeg(image, 90)
            else:
                copy = blur(image, float(rng.uniform(0.3, 1.2)))
            out += self.tiles(copy)
        return out

    def score(self, images: list[np.ndarray]) -> np.ndarray:
        """Probability of 'synthetic' per image: the mean over its tiles."""
        counts, tiles = [], []
        for image in images:
            parts = self.tiles(image)
            counts.append(len(parts))
            tiles += parts
        if not tiles:
            return np.zeros(0)
        per_tile = self._score_tiles(tiles)
        edges = np.cumsum([0] + counts)
        return np.array([per_tile[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])

    def calibrate(self, real: list[np.ndarray], fpr: float = 0.01) -> Detector:
        """Set the operating point: the threshold that flags at most ``fpr`` of these (held-out) real images."""
        from .evaluate import threshold_at_fpr

        threshold = threshold_at_fpr(self.score(real), fpr)
        point = f"threshold {threshold:.4g}: at most {fpr:.0%} false positives on {len(real)} held-out real images"
        self.config = dataclasses.replace(self.config, threshold=threshold, operating_point=point)
        return self

    def _fit_tiles(self, tiles: list[np.ndarray], labels: np.ndarray) -> None:
        raise NotImplementedError

    def _score_tiles(self, tiles: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    # files ------------------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp))
        write_json_atomic(directory / CONFIG_NAME, config_to_dict(self.config))
        return directory
