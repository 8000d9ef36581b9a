"""Image grids for validation pictures, reports and the demo page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..files import atomic_path


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """3×H×W float [0, 1] tensor (or H×W×3 array) → H×W×3 uint8. One-channel and H×W inputs become
    grey RGB."""
    if torch.is_tensor(image):
        tensor = image.detach().float().cpu().clamp(0, 1)
        if tensor.dim() == 3:
            tensor = tensor.permute(1, 2, 0)
        array = (tensor.numpy() * 255 + 0.5).astype(np.uint8)
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array[..., :3]


def image_grid(images: list, columns: int, padding: int = 2, fill: int = 255) -> np.ndarray:
    """Tile images (tensors or arrays, one size: the first sets the cell) into rows of ``columns``."""
    if not len(images):
        raise ValueError("image_grid needs at least one image")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    tiles = [to_uint8(im) for im in images]
    height, width = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    grid = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding, 3), fill, np.uint8)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        tile = tile[:height, :width]  # the first image sets the cell size; larger ones are cropped to it
        grid[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return grid


def write_png(path: str | Path, array: np.ndarray) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
