"""Detectors by name and folder: build one of a method, load a trained folder, train and calibrate, the shipped
detectors; reading images for them. The interface (``Detector``, ``DetectorConfig``) is in ``base.py``, the methods in
``spectral.py``, ``cnn.py`` and ``probe.py``; their names are re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import config_from_dict
from ..errors import InputError
from ..files import read_json
from .base import CONFIG_NAME, DEFAULT_MAX_PIXELS, METHODS, WEIGHTS_NAME, Detector, DetectorConfig

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_MAX_PIXELS",
    "METHODS",
    "SHIPPED_DETECTORS",
    "WEIGHTS_NAME",
    "Detector",
    "DetectorConfig",
    "build_detector",
    "load_detector",
    "load_image_folders",
    "read_rgb",
    "resolve_detector",
    "shipped_detector_or_none",
    "split_for_calibration",
    "train_detector",
]

log = logging.getLogger(__name__)


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
    data = read_json(directory / CONFIG_NAME)
    if isinstance(data, dict) and data.get("method") == "probe":
        data.setdefault("forensic_probe", "linear")  # written before the boosted probe existed
    config = config_from_dict(DetectorConfig, data, directory / CONFIG_NAME)
    detector = build_detector(config, pretrained=False)  # the weights come from the file
    try:
        detector.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
    except (SafetensorError, FileNotFoundError, OSError, KeyError, RuntimeError, ValueError) as error:
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
    except Image.DecompressionBombError as error:
        from ..data.images import too_large

        raise too_large(path, error, max_pixels) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(path, f"cannot read image ({error})", "is it a complete image file?") from None


def load_image_folders(folders: list[str | Path], limit: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Every readable image under ``folders`` (recursively), or a seeded sample of ``limit`` of them."""
    from ..data.images import is_image_file
    from ..data.synthetic_tiles import is_synthetic_dataset

    files = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(folder, "folder not found")
        if is_synthetic_dataset(folder):  # terrasynth synthesize's output: its images, not its masks
            folder = folder / "images"
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
