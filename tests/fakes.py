"""Tiny fake data made in code, for tests anywhere in the suite.

    from tests.fakes import make_paired_tiles, make_scene_folder, write_geotiff, write_geojson

Everything is small (a few 32×32 tiles) and seeded, so a test that uses it runs in milliseconds and sees the
same pixels every time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# The class table of shared/data/landcoverai_pairs/classes.json (index, name, grey level in the source map).
LANDCOVER_CLASSES = [
    {"index": 0, "name": "background", "rgb": [0, 0, 0]},
    {"index": 1, "name": "building", "rgb": [45, 45, 45]},
    {"index": 2, "name": "woodland", "rgb": [74, 74, 74]},
    {"index": 3, "name": "water", "rgb": [176, 176, 176]},
    {"index": 4, "name": "road", "rgb": [255, 255, 255]},
]
UTM_33N = "EPSG:32633"
# A 0.5 m grid with its top-left corner in UTM zone 33N (southern Poland).
ORIGIN_X, ORIGIN_Y, PIXEL_M = 500_000.0, 5_550_000.0, 0.5


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` pixels but holds no pixel data: opening it costs nothing, decoding
    it would take gigabytes (a decompression bomb's first bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def write_classes_json(root: str | Path, classes: list[dict] | None = None) -> Path:
    path = Path(root) / "classes.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"classes": classes or LANDCOVER_CLASSES, "note": "fake"}, indent=1))
    return path


def random_mask(rng: np.random.Generator, size: int, num_classes: int = 5) -> np.ndarray:
    """A blocky class-index mask (uint8 H×W): quarter-tile blocks of random classes, like fields and woods."""
    block = max(1, size // 4)
    coarse = rng.integers(0, num_classes, (size // block + 1, size // block + 1), dtype=np.uint8)
    return np.kron(coarse, np.ones((block, block), np.uint8))[:size, :size].copy()


def write_mask_png(path: str | Path, mask: np.ndarray, mode: str = "P") -> Path:
    """A class-index PNG: palette (``"P"``, as LandCover.ai ships) or grey (``"L"``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if mode == "P":
        image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
        palette = [v for entry in LANDCOVER_CLASSES for v in entry["rgb"]]
        image.putpalette(palette + [0] * (768 - len(palette)))
    else:
        image = Image.fromarray(mask)  # uint8 H×W is mode "L"
    image.save(path)
    return path


def write_rgb(path: str | Path, array: np.ndarray, **save_args) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, **save_args)
    return path


def make_paired_tiles(
    root: str | Path,
    n: int = 6,
    size: int = 32,
    num_classes: int = 5,
    seed: int = 0,
    image_suffix: str = ".png",
    mask_mode: str = "P",
) -> Path:
    """``root/images/NNNN.png`` (random RGB), ``root/masks/NNNN.png`` (class indices) and
    ``root/classes.json``.

    Each image's red channel is brighter where the mask's class is higher, so a test can tell that an image
    and its mask still line up after a transform.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n):
        mask = random_mask(rng, size, num_classes)
        rgb = rng.integers(0, 64, (size, size, 3), dtype=np.uint8)
        rgb[..., 0] = (mask * (255 // max(num_classes - 1, 1))).astype(np.uint8)
        write_rgb(root / "images" / f"{i:04d}{image_suffix}", rgb)
        write_mask_png(root / "masks" / f"{i:04d}.png", mask, mask_mode)
    write_classes_json(
        root,
        LANDCOVER_CLASSES[:num_classes]
        if num_classes <= 5
        else [{"index": i, "name": f"class{i}", "rgb": [i, i, i]} for i in range(num_classes)],
    )
    return root


def make_scene_folder(
    root: str | Path,
    classes: tuple[str, ...] | list[str] = ("forest", "river_lake", "resident"),
    n: int = 4,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """``root/<class>/<class>_NN.jpg``: ``n`` tiny JPEGs per class, each class a different mean colour."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        base = np.array([(60 * c) % 256, (120 + 40 * c) % 256, (200 - 30 * c) % 256], dtype=np.int16)
        for i in range(n):
            noise = rng.integers(-20, 20, (size, size, 3))
            write_rgb(root / name / f"{name}_{i:02d}.jpg", np.clip(base + noise, 0, 255), quality=90)
    return root


def grid_transform(pixel: float = PIXEL_M, x: float = ORIGIN_X, y: float = ORIGIN_Y):
    """A north-up Affine with ``pixel`` metres per pixel and its top-left corner at (``x``, ``y``)."""
    from rasterio.transform import from_origin

    return from_origin(x, y, pixel, pixel)


def write_geotiff(path: str | Path, array: np.ndarray, crs: str | None = UTM_33N, transform=None) -> Path:
    """A GeoTIFF of an H×W (one band) or H×W×C array with a real CRS and Affine transform."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    bands = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    transform = grid_transform() if transform is None else transform
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=bands.dtype,
        crs=crs,
        transform=transform,
    ) as dst:
        dst.write(bands)
    return path


def polygon(left: float, bottom: float, right: float, top: float) -> dict:
    return {
        "type": "Polygon",
        "coordinates": [[[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]],
    }


def feature(geometry: dict, cls, **properties) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": {"class": cls, **properties}}


def write_geojson(path: str | Path, features: list[dict], crs: str | None = None) -> Path:
    """A FeatureCollection; ``crs`` (e.g. ``"EPSG:32633"``) is written the GeoJSON 2008 way, as a named
    CRS."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict = {"type": "FeatureCollection", "features": list(features)}
    if crs is not None:
        code = crs.split(":")[-1]
        data["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"}}
    path.write_text(json.dumps(data))
    return path


def sample_features(x: float = ORIGIN_X, y: float = ORIGIN_Y, extent: float = 32.0) -> list[dict]:
    """On the square (x, y - extent)..(x + extent, y): a water polygon on the left half, a road line
    across the top quarter and a building point near the bottom right."""
    return [
        feature(polygon(x, y - extent, x + extent / 2, y), "water"),
        feature({"type": "LineString", "coordinates": [[x, y - extent / 4], [x + extent, y - extent / 4]]}, "road"),
        feature({"type": "Point", "coordinates": [x + 0.8 * extent, y - 0.8 * extent]}, "building"),
    ]


def make_provenance_record(seed: int = 1, size: int = 64, **changes):
    """A fixed provenance record (no real model behind it) for tests of files, watermarks and credentials."""
    from terrasynth.generate.provenance import ProvenanceRecord

    fields = dict(
        generator="terrasynth test",
        model="default",
        model_sha256="0" * 64,
        prompt="aerial image",
        negative_prompt=None,
        seed=seed,
        steps=2,
        guidance_scale=2.0,
        scheduler="dpm++",
        layout_sha256=None,
        layout_source=None,
        width=size,
        height=size,
        created="2026-01-01T00:00:00+00:00",
    )
    return ProvenanceRecord(**{**fields, **changes})
