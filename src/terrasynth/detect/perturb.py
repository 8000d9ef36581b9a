"""Perturbations a synthetic image meets on its way to an analyst: re-encoding, resizing, blurring, cropping.

Each works on a uint8 H×W×3 array and returns one; named perturbations make the rows of the robustness tables.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter


def jpeg(image: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    """Re-encode as JPEG at ``quality``; ``subsampling`` 2 is 4:2:0 chroma (PIL's default, as most encoders use),
    0 is 4:4:4 (full-resolution colour)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def match_jpeg(images: list[np.ndarray], quality: int | None) -> list[np.ndarray]:
    """Re-encode synthetic images as JPEG at ``quality`` to match real tiles distributed as JPEG (``None`` or 0:
    unchanged). Without it a detector trained on JPEG real tiles and lossless synthetic ones can learn the file
    format instead of the generator."""
    if not quality:
        return list(images)
    return [jpeg(x, quality) for x in images]


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` with bicubic interpolation (antialiased when shrinking, as PIL does)."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def crop(image: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A random window of ``fraction`` of each side, kept at native resolution."""
    height, width = image.shape[:2]
    h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
    rng = np.random.default_rng(seed)
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return np.ascontiguousarray(image[top : top + h, left : left + w])


def sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask (radius 1.5 px, ``amount`` in per cent), as photo editors and many viewers apply."""
    return np.asarray(Image.fromarray(image).filter(ImageFilter.UnsharpMask(1.5, int(amount), 2)))


def adjust_colour(image: np.ndarray, contrast: float, saturation: float, gamma: float) -> np.ndarray:
    """Contrast and saturation scaled about the image's mean, then a gamma curve: everyday colour edits."""
    x = image.astype(np.float32) / 255.0
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * saturation
    x = x.mean() + (x - x.mean()) * contrast
    x = np.clip(x, 0, 1) ** gamma
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def screenshot(image: np.ndarray, scale: float) -> np.ndarray:
    """A screenshot of the image shown at ``scale``: bilinear resampling, then stored losslessly."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


EVERYDAY = ("jpeg", "resize", "down-up", "sharpen", "colour", "screenshot")


def everyday_processing(image: np.ndarray, rng: np.random.Generator, min_size: int = 64) -> tuple[np.ndarray, str]:
    """One random everyday edit of an image, and its name: JPEG 30–95, resizing ×0.5–1.5, down- and up-sampling,
    sharpening, colour and contrast changes, a screenshot. Real images stay real after any of them, so a detector
    trained with them cannot learn "processed means synthetic". Sizes never fall below ``min_size``."""
    kind = EVERYDAY[int(rng.integers(len(EVERYDAY)))]
    floor = min_size / min(image.shape[:2])
    if kind == "jpeg":
        quality = int(rng.integers(30, 96))
        return jpeg(image, quality), f"jpeg{quality}"
    if kind == "resize":
        scale = float(max(floor, rng.uniform(0.5, 1.5)))
        return resize(image, scale), f"resize{scale:.2f}"
    if kind == "down-up":
        scale = float(max(floor, rng.uniform(0.4, 0.8)))
        small = resize(image, scale)
        height, width = image.shape[:2]
        return np.asarray(
            Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        ), f"downup{scale:.2f}"
    if kind == "sharpen":
        amount = float(rng.uniform(50, 200))
        return sharpen(image, amount), f"sharpen{amount:.0f}"
    if kind == "colour":
        contrast, saturation, gamma = rng.uniform(0.7, 1.3), rng.uniform(0.6, 1.4), rng.uniform(0.7, 1.4)
        return adjust_colour(image, contrast, saturation, gamma), "colour"
    scale = float(max(floor, rng.uniform(0.6, 1.25)))
    return jpeg(screenshot(image, scale), 90) if rng.random() < 0.5 else screenshot(image, scale), "screenshot"


def random_downscale(image: np.ndarray, rng: np.random.Generator, min_size: int = 64) -> np.ndarray:
    """The image shrunk by a random factor in 0.4–0.9 (never below ``min_size``): images are often shared smaller
    than they were made, which erases most up-sampling traces. Training on shrunk copies of both classes keeps
    what survives."""
    scale = float(max(min_size / min(image.shape[:2]), rng.uniform(0.4, 0.9)))
    return resize(image, min(1.0, scale))


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda x: x,
    "jpeg95": lambda x: jpeg(x, 95),
    "jpeg75": lambda x: jpeg(x, 75),
    "jpeg50": lambda x: jpeg(x, 50),
    "resize0.5": lambda x: resize(x, 0.5),
    "resize0.75": lambda x: resize(x, 0.75),
    "blur1": lambda x: blur(x, 1.0),
    "crop0.8": lambda x: crop(x, 0.8),
}


def perturb(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Apply the named perturbation (a key of ``PERTURBATIONS``); ``crop`` draws its window from ``seed``."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    if name.startswith("crop"):
        return crop(image, float(name[4:]), seed)
    return PERTURBATIONS[name](image)
