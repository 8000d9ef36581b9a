"""The detector interface: real (0) vs synthetic (1) scores for satellite tiles, whatever the method inside.

A detector reads square tiles of ``input_size`` pixels at the image's native resolution (resampling would erase
the up-sampling fingerprints it looks for): up to ``max_tiles`` tiles spread over the image, whose scores are
averaged. Images smaller than one tile are refused, and so are images above ``max_pixels`` (a stated limit,
checked from the header before decoding). A trained detector is a folder: ``detector.json`` (its config, the
operating point included) and ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import config_from_dict, config_to_dict
from ..errors import InputError
from ..files import atomic_path, read_json, write_json_atomic

log = logging.getLogger(__name__)

METHODS = ("spectral", "cnn", "probe")
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


def build_detector(config: DetectorConfig, pretrained: bool | None = None) -> Detector:
    """An untrained detector of ``config.method``; ``pretrained=False`` skips loading ImageNet weights."""
    if config.method == "spectral":
        from .spectral import SpectralDetector

        return SpectralDetector(config)
    if config.method == "probe":
        from .probe import ProbeDetector

        return ProbeDetector(config)
    from .cnn import CNNDetector

    return CNNDetector(config, pretrained)


def load_detector(directory: str | Path) -> Detector:
    """A trained detector folder (``detector.json`` + ``model.safetensors``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise InputError(
            directory, f"not a detector folder (no {CONFIG_NAME})", "train one with `terrasynth detect train`"
        )
    config = config_from_dict(DetectorConfig, read_json(directory / CONFIG_NAME), directory / CONFIG_NAME)
    detector = build_detector(config, pretrained=False)  # the weights come from the file
    try:
        detector.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
    except (SafetensorError, FileNotFoundError, OSError, KeyError, RuntimeError) as error:
        raise InputError(directory / WEIGHTS_NAME, f"cannot load detector weights ({error})") from None
    return detector


# reading files --------------------------------------------------------------------------------------------------


def read_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A uint8 H×W×3 image; the size is checked from the header before decoding. Unreadable → InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    path, f"image {width}x{height} is above the {max_pixels:,}-pixel limit", "tile it first"
                )
            image.load()
            if image.mode not in ("RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr"):
                from ..data.images import read_image

                array = read_image(path).permute(1, 2, 0).numpy()
                return np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise InputError(path, "not an image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(path, f"cannot read image ({error})", "is it a complete image file?") from None


def load_image_folders(folders: list[str | Path], limit: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Every readable image under ``folders`` (recursively), or a seeded sample of ``limit`` of them."""
    from ..data.images import is_image_file

    files = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(folder, "folder not found")
        found = sorted(p for p in folder.rglob("*") if is_image_file(p))
        if not found:
            raise InputError(folder, "no image files in folder")
        files += found
    if limit is not None and len(files) > limit:
        rng = np.random.default_rng(seed)
        files = [files[i] for i in sorted(rng.choice(len(files), limit, replace=False))]
    images = []
    for path in files:
        try:
            images.append(read_rgb(path))
        except InputError as error:
            log.warning("skipping %s", error)
    return images


# training and the shipped detectors -----------------------------------------------------------------------------

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights" / "detectors"
SHIPPED_DETECTORS = ("probe", "spectral", "cnn")  # probe is the default; spectral and cnn are the early ones


def resolve_detector(name_or_path: str | Path) -> Detector:
    """A shipped detector (``probe``, ``spectral``, ``cnn``; ``default`` is ``probe``) or a detector folder."""
    text = "probe" if str(name_or_path) == "default" else str(name_or_path)
    if text in SHIPPED_DETECTORS:
        path = SHIPPED_DIR / text
        if not (path / CONFIG_NAME).is_file():
            raise InputError(
                path, f"the shipped {text!r} detector is not installed", "train one with `terrasynth detect train`"
            )
        return load_detector(path)
    return load_detector(text)


def shipped_detector_or_none() -> Detector | None:
    try:
        return resolve_detector("default")
    except InputError:
        return None


def split_for_calibration(images: list, fraction: float, seed: int) -> tuple[list, list]:
    """(training part, calibration part) of a list, shuffled with ``seed``."""
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(round(len(images) * (1.0 - fraction)))
    return [images[i] for i in order[:cut]], [images[i] for i in order[cut:]]


def train_detector(
    config: DetectorConfig,
    real: list[np.ndarray],
    fake: list[np.ndarray],
    calibration_fraction: float = 0.2,
    fpr: float = 0.01,
) -> Detector:
    """Fit on (1 − ``calibration_fraction``) of the real and fake images; set the operating point at ``fpr`` on the
    held-back real images (with fewer than 20 of them the threshold stays at 0.5)."""
    real_fit, real_cal = split_for_calibration(real, calibration_fraction, config.seed)
    fake_fit, _ = split_for_calibration(fake, calibration_fraction, config.seed + 1)
    detector = build_detector(config).fit(real_fit, fake_fit)
    if len(real_cal) >= 20:
        detector.calibrate(real_cal, fpr)
    return detector
