"""Data: dict samples ``{image, layout, caption, ...}`` from paired tiles, scene folders, GeoJSON and maps."""

from .captions import caption_for_scene, caption_from_layout
from .classes import LANDCOVER_AI, ClassTable
from .images import list_images, read_image, read_mask
from .layouts import Layout, TileGrid, load_layout, one_hot_layout, rasterize_geojson, snap_to_palette
from .paired_tiles import PairedTiles
from .scene_folder import SceneFolder

__all__ = [
    "LANDCOVER_AI",
    "ClassTable",
    "Layout",
    "PairedTiles",
    "SceneFolder",
    "TileGrid",
    "caption_for_scene",
    "caption_from_layout",
    "list_images",
    "load_layout",
    "one_hot_layout",
    "rasterize_geojson",
    "read_image",
    "read_mask",
    "snap_to_palette",
]
