"""Fake "real" and "synthetic" tiles made in code: smooth random fields vs nearest-neighbour up-sampled noise."""

import numpy as np
from PIL import Image


def smooth_field(rng: np.random.Generator, size: int = 64, noise: float = 6.0, cell: int = 8) -> np.ndarray:
    """A "real" tile: a smooth random field (bicubic-upsampled coarse noise) plus fine sensor noise."""
    coarse = rng.integers(0, 256, (size // cell, size // cell, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    return np.clip(field + rng.normal(0, noise, field.shape), 0, 255).astype(np.uint8)


def upsampled_noise(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A "synthetic" tile: noise up-sampled ×2 with nearest neighbours, the checkerboard fingerprint of generators."""
    small = rng.integers(0, 256, (size // 2, size // 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.NEAREST))


def make_sets(n: int, size: int = 64, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [smooth_field(rng, size) for _ in range(n)], [upsampled_noise(rng, size) for _ in range(n)]


def write_set(folder, images, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}{suffix}")
    return folder
