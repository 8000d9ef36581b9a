"""Layouts: class-index rasters (H×W, int64) from masks, GeoJSON vector features and colour-coded maps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .classes import ClassTable
from .images import GEOTIFF_SUFFIXES, IMAGE_SUFFIXES, _open_pil, _read_raster, read_georeference, read_mask


def class_shares(layout: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The share of the layout's pixels in each class (ids beyond the last class count as the last)."""
    counts = torch.bincount(layout.flatten().long().clamp(0, num_classes - 1), minlength=num_classes)
    return counts.float() / layout.numel()


@dataclass(frozen=True)
class TileGrid:
    """A raster grid: ``bounds`` (left, bottom, right, top) in ``crs`` cut into ``width`` × ``height``
    pixels."""

    bounds: tuple[float, float, float, float]
    width: int = 256
    height: int = 256
    crs: str = "EPSG:4326"

    def __post_init__(self):
        left, bottom, right, top = self.bounds
        if not (right > left and top > bottom):
            raise ValueError(f"grid bounds must have right > left and top > bottom, got {self.bounds}")
        if self.width < 1 or self.height < 1:
            raise ValueError("grid width and height must be positive")

    @property
    def transform(self):
        from rasterio.transform import from_bounds

        return from_bounds(*self.bounds, self.width, self.height)

    def georeference(self) -> dict:
        return {"crs": self.crs, "transform": list(self.transform)[:6]}


@dataclass(frozen=True, eq=False)
class Layout:
    """A class-index raster with its class table and, when the source had one, its georeference."""

    classes: torch.Tensor  # H×W int64
    class_table: ClassTable
    georeference: dict | None = None
    source: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.classes.shape)

    def shares(self) -> dict[str, float]:
        """The fraction of pixels of each class; values outside the class table (no-data) are not counted."""
        values = self.classes.flatten().long().cpu()
        values = values[(values >= 0) & (values < len(self.class_table))]
        counts = torch.bincount(values, minlength=len(self.class_table)).double()
        counts = counts / counts.sum().clamp(min=1)
        return {name: float(c) for name, c in zip(self.class_table.names, counts, strict=True)}


def _geojson_crs(data: dict) -> str | None:
    crs = data.get("crs")
    if isinstance(crs, dict):
        properties = crs.get("properties") or {}
        if properties.get("code") is not None and str(crs.get("type", "")).upper() == "EPSG":
            return f"EPSG:{properties['code']}"  # the GeoJSON 2008 {"type": "EPSG", "properties": {"code": N}}
        name = properties.get("name")
        if name:
            name = str(name)
            # "urn:ogc:def:crs:EPSG::32633" and "urn:ogc:def:crs:OGC:1.3:CRS84": the GeoJSON 2008 spellings.
            if "CRS84" in name:
                return "EPSG:4326"
            if "EPSG" in name:
                return "EPSG:" + name.rstrip(":").split(":")[-1]
            return name
    return None


def same_crs(a: str, b: str) -> bool:
    """Whether two CRS strings ("EPSG:32634", WKT, PROJ) name the same CRS; unreadable ones compare as text."""
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(a) == CRS.from_user_input(b)
    except Exception:
        return a == b


def read_geojson_features(path: str | Path) -> tuple[list[dict], str]:
    """Features with geometry from a GeoJSON file, and its CRS (RFC 7946 default: EPSG:4326)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"not valid GeoJSON: {error}") from None
    if not isinstance(data, dict):
        raise InputError(path, "not a GeoJSON object")
    if data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    elif data.get("type") == "Feature":
        features = [data]
    else:
        raise InputError(path, f"expected a FeatureCollection or Feature, got type {data.get('type')!r}")
    features = [f for f in features if isinstance(f, dict) and f.get("geometry")]
    if not features:
        raise InputError(path, "GeoJSON has no features with geometry", "add Polygon/LineString/Point features")
    return features, _geojson_crs(data) or "EPSG:4326"


def features_bounds(features: list[dict]) -> tuple[float, float, float, float]:
    xs, ys = [], []

    def walk(coords):
        if isinstance(coords, (list, tuple)) and coords and isinstance(coords[0], (int, float)):
            xs.append(float(coords[0]))
            ys.append(float(coords[1]))
        elif isinstance(coords, (list, tuple)):
            for c in coords:
                walk(c)

    for feature in features:
        geometry = feature["geometry"]
        if geometry.get("type") == "GeometryCollection":
            for g in geometry.get("geometries", []):
                walk(g.get("coordinates"))
        else:
            walk(geometry.get("coordinates"))
    if not xs:
        raise ValueError("features have no coordinates")
    return min(xs), min(ys), max(xs), max(ys)


def _class_index(value, class_table: ClassTable) -> int:
    """A feature's class: an integer id (also ``"3"`` or ``3.0``) or a class name (exact, then any case)."""
    if isinstance(value, bool):
        raise KeyError(f"class {value!r} is neither a class id nor a name")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    if text in class_table.names:
        return class_table.index(text)
    lowered = [name.lower() for name in class_table.names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    return class_table.index(text)  # raises KeyError naming the known classes


def rasterize_geojson(
    path: str | Path,
    class_table: ClassTable,
    grid: TileGrid | None = None,
    class_property: str = "class",
    class_map: dict[str, str] | None = None,
    default_class: int = 0,
    line_width_px: float = 3.0,
    size: int = 256,
) -> Layout:
    """Burn GeoJSON features into a class-index raster with ``rasterio.features.rasterize``.

    A feature's class is its ``class_property`` value, mapped through ``class_map`` (source value → class
    name) and looked up in ``class_table`` by name (exactly, then ignoring case), or taken as an index if it
    is an integer. Lines and points are buffered to ``line_width_px`` pixels. Later features are drawn over
    earlier ones. Without ``grid`` the features' bounding box, made square, is cut into ``size`` × ``size``
    pixels.
    """
    import shapely
    from rasterio.features import rasterize
    from shapely.geometry import mapping, shape

    features, crs = read_geojson_features(path)
    path = Path(path)
    parsed = []
    for number, feature in enumerate(features):
        value = (feature.get("properties") or {}).get(class_property)
        if value is None:
            raise InputError(
                path,
                f"feature {number} has no {class_property!r} property",
                "set it, or pick --class-property",
            )
        if class_map is not None:
            value = class_map.get(str(value), value)
        try:
            index = _class_index(value, class_table)
        except KeyError as error:
            raise InputError(path, f"feature {number}: {error.args[0]}", "map it with a class map") from None
        if not 0 <= index < len(class_table):
            raise InputError(path, f"feature {number}: class id {index} outside 0..{len(class_table) - 1}")
        try:
            geometry = shape(feature["geometry"])
        except Exception as error:  # shapely raises several types for malformed coordinates
            raise InputError(path, f"feature {number} has invalid geometry: {error}") from None
        if geometry.is_empty:
            raise InputError(path, f"feature {number} has an empty geometry", "drop it or give it coordinates")
        parsed.append((geometry, index))
    if grid is None:
        left = min(g.bounds[0] for g, _ in parsed)
        bottom = min(g.bounds[1] for g, _ in parsed)
        right = max(g.bounds[2] for g, _ in parsed)
        top = max(g.bounds[3] for g, _ in parsed)
        half = max(right - left, top - bottom, 1e-9) / 2
        cx, cy = (left + right) / 2, (bottom + top) / 2
        grid = TileGrid((cx - half, cy - half, cx + half, cy + half), size, size, crs)
    elif not same_crs(crs, grid.crs):
        raise InputError(
            path,
            f"GeoJSON CRS {crs} does not match the grid CRS {grid.crs}",
            "reproject the features (e.g. ogr2ogr -t_srs) or give the grid in the features' CRS",
        )
    pixel = max(abs(grid.transform.a), abs(grid.transform.e))
    shapes = []
    for geometry, index in parsed:
        if geometry.geom_type in ("LineString", "MultiLineString", "LinearRing", "Point", "MultiPoint"):
            geometry = geometry.buffer(pixel * line_width_px / 2)
        elif geometry.geom_type == "GeometryCollection":
            geometry = shapely.unary_union(
                [
                    g.buffer(pixel * line_width_px / 2) if g.geom_type not in ("Polygon", "MultiPolygon") else g
                    for g in geometry.geoms
                ]
            )
        shapes.append((mapping(geometry), index))
    raster = rasterize(
        shapes,
        out_shape=(grid.height, grid.width),
        transform=grid.transform,
        fill=default_class,
        dtype="int32",
        all_touched=False,
    )
    return Layout(torch.from_numpy(raster.astype(np.int64)), class_table, grid.georeference(), str(path))


def snap_to_palette(rgb: np.ndarray, palette, max_distance: float | None = None, path=None) -> torch.Tensor:
    """Class index of the nearest palette colour for each pixel of an H×W×3 uint8 colour-coded map.

    Rendered map tiles are anti-aliased, so exact matching fails at edges; nearest colour does not. With
    ``max_distance`` set, a pixel farther than that from every palette colour is an error (wrong palette).
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise InputError(path, f"a colour-coded map must be H×W×3 RGB, got shape {array.shape}")
    height, width = array.shape[:2]
    pixels = array[..., :3].reshape(-1, 3).astype(np.float32)  # an alpha channel is dropped
    colors = np.asarray(palette, dtype=np.float32).reshape(-1, 3)
    nearest = np.empty(len(pixels), dtype=np.int64)
    worst = 0.0
    chunk = max(1, 4_000_000 // max(len(colors), 1))  # bounds memory for large maps and palettes
    for start in range(0, len(pixels), chunk):
        part = pixels[start : start + chunk]
        distances = ((part[:, None, :] - colors[None, :, :]) ** 2).sum(-1)
        nearest[start : start + chunk] = distances.argmin(1)
        if len(part):
            worst = max(worst, float(distances.min(1).max()))
    if max_distance is not None:
        worst = float(np.sqrt(worst))
        if worst > max_distance:
            raise InputError(path, f"a pixel is {worst:.0f} RGB units from every class colour", "check the palette")
    return torch.from_numpy(nearest.reshape(height, width))


def read_colour_map(
    path: str | Path,
    class_table: ClassTable,
    max_distance: float | None = None,
    match_distance: float = 48.0,
    min_match_fraction: float = 0.75,
) -> Layout:
    """A colour-coded map (PNG/JPEG, or a 3- or 4-band GeoTIFF keeping its georeference) snapped to
    classes.

    Anti-aliased edges are off-palette, but most of a real map is drawn in its class colours: unless at least
    ``min_match_fraction`` of the pixels lie within ``match_distance`` RGB units of a class colour, the image is
    refused (it is likely a photo, or the class table does not match the map's colours)."""
    path = Path(path)
    if path.suffix.lower() in GEOTIFF_SUFFIXES and path.is_file():
        rgb = _read_raster(path)
        if rgb.shape[-1] not in (3, 4):
            raise InputError(path, f"a colour-coded map must have 3 or 4 bands, got {rgb.shape[-1]}")
    else:
        rgb = np.asarray(_open_pil(path).convert("RGB"))
    classes = snap_to_palette(rgb, class_table.colors, max_distance, path)
    palette = np.asarray(class_table.colors, dtype=np.float32)
    distance = np.linalg.norm(rgb[..., :3].astype(np.float32) - palette[classes.numpy()], axis=-1)
    matched = float((distance <= match_distance).mean())
    if matched < min_match_fraction:
        raise InputError(
            path,
            f"does not look like a colour-coded map in the class table's colours (only {matched:.0%} of pixels "
            "are near a class colour)",
            "give a class-index mask, or a class table whose rgb colours match the map",
        )
    return Layout(classes, class_table, read_georeference(path), str(path))


def load_layout(
    path: str | Path,
    class_table: ClassTable,
    grid: TileGrid | None = None,
    class_property: str = "class",
    class_map: dict[str, str] | None = None,
    size: int = 256,
) -> Layout:
    """Any layout source: a class-index mask (PNG or GeoTIFF), a colour-coded map (RGB image, snapped to the
    class table's colours) or GeoJSON features (rasterised onto ``grid``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        return rasterize_geojson(path, class_table, grid, class_property, class_map, size=size)
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(path, f"unknown layout format {suffix!r}", "use a mask PNG/GeoTIFF, an RGB map or GeoJSON")
    if suffix in GEOTIFF_SUFFIXES and path.is_file() and _band_count(path) in (3, 4):
        return read_colour_map(path, class_table)
    if suffix in GEOTIFF_SUFFIXES:
        return Layout(read_mask(path, len(class_table)), class_table, read_georeference(path), str(path))
    mode = _open_pil(path).mode
    if mode in ("P", "L", "I", "I;16"):
        return Layout(read_mask(path, len(class_table)), class_table, None, str(path))
    return read_colour_map(path, class_table)


def _band_count(path: Path) -> int:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            return src.count
    except RasterioIOError as error:
        raise InputError(path, f"cannot read raster ({error})") from None


def one_hot_layout(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """B×H×W (or H×W) class indices → B×K×H×W (or K×H×W) float one-hot."""
    squeeze = classes.dim() == 2
    if squeeze:
        classes = classes[None]
    onehot = torch.nn.functional.one_hot(classes.clamp(0, num_classes - 1), num_classes)
    onehot = onehot.permute(0, 3, 1, 2).float()
    return onehot[0] if squeeze else onehot
