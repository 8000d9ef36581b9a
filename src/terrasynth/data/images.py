"""Reading images and masks with checks that name the file when something is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
GEOTIFF_SUFFIXES = (".tif", ".tiff")


def luma(rgb: np.ndarray, dtype=np.float32) -> np.ndarray:
    """ITU-R BT.601 luma of an array whose last axis is R, G, B (any value range), as ``dtype``."""
    rgb = np.asarray(rgb, dtype)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "folder not found")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise InputError(folder, "no image files in folder", f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    return files


def is_image_file(path: Path) -> bool:
    """A visible file with an image suffix (hidden files such as macOS ``._x.jpg`` are not images)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def too_large(path: Path, error: Image.DecompressionBombError, limit: int | None = None) -> InputError:
    """The one-line refusal of an image whose header declares more pixels than Pillow will decode."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    limit = limit or 2 * Image.MAX_IMAGE_PIXELS
    return InputError(path, f"image of {size} is above the {limit:,}-pixel limit", "tile it or scale it down first")


def _open_pil(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except Image.DecompressionBombError as error:
        raise too_large(path, error) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(path, f"cannot read image ({error})", "is it a complete PNG/JPEG/TIFF file?") from None


def read_georeference(path: str | Path) -> dict | None:
    """``{"crs": WKT-or-EPSG string, "transform": 6 affine numbers}`` of a GeoTIFF, or None if it has none."""
    path = Path(path)
    if path.suffix.lower() not in GEOTIFF_SUFFIXES:
        return None
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                return None
            return {"crs": src.crs.to_string(), "transform": list(src.transform)[:6]}
    except RasterioIOError as error:
        raise InputError(path, f"cannot read GeoTIFF ({error})") from None


def _read_raster(path: Path) -> np.ndarray:
    """Bands-last array of a (Geo)TIFF through rasterio, which reads what PIL cannot (float, many bands)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            return np.moveaxis(src.read(), 0, -1)
    except RasterioIOError as error:
        raise InputError(path, f"cannot read raster ({error})") from None


def read_image(path: str | Path) -> torch.Tensor:
    """An RGB image as float32 CHW in [0, 1]."""
    path = Path(path)
    if path.suffix.lower() in GEOTIFF_SUFFIXES and path.is_file():
        array = _read_raster(path)
        if array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)
        if array.shape[-1] < 3:
            raise InputError(path, f"expected an RGB image, got {array.shape[-1]} bands")
        array = array[..., :3]
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        elif np.issubdtype(array.dtype, np.integer):
            array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
        else:
            array = np.clip(array.astype(np.float32), 0.0, 1.0)
    else:
        array = np.asarray(_open_pil(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def read_mask(path: str | Path, num_classes: int | None = None) -> torch.Tensor:
    """A class-index mask as int64 HW, checked against ``num_classes``. Palette and grey PNGs hold indices."""
    path = Path(path)
    if path.suffix.lower() in GEOTIFF_SUFFIXES and path.is_file():
        array = _read_raster(path)
        if array.shape[-1] != 1:
            raise InputError(path, f"a mask must have one band, got {array.shape[-1]}")
        array = array[..., 0]
    else:
        image = _open_pil(path)
        if image.mode not in ("P", "L", "I", "I;16"):
            raise InputError(
                path,
                f"a mask must be a single-band class-index image, got mode {image.mode}",
                "for a colour-coded map use a palette to snap colours to classes",
            )
        array = np.asarray(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.mod(array, 1) == 0):
            raise InputError(path, "mask values must be whole class indices")
    mask = torch.from_numpy(array.astype(np.int64))
    check_class_indices(mask, num_classes, path)
    return mask


def check_class_indices(mask: torch.Tensor, num_classes: int | None, path: str | Path | None = None) -> None:
    if num_classes is None or mask.numel() == 0:
        return
    low, high = int(mask.min()), int(mask.max())
    if low < 0 or high >= num_classes:
        raise InputError(
            path,
            f"mask has class ids {low}..{high}, outside the class table 0..{num_classes - 1}",
            "use the class table (classes.json) that matches this mask",
        )
