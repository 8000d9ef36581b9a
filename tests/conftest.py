"""Shared fixtures: tiny fake data written in code (see tests/fakes.py for the makers)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.fakes import (
    UTM_33N,
    grid_transform,
    make_paired_tiles,
    make_scene_folder,
    sample_features,
    write_classes_json,
    write_geojson,
    write_geotiff,
)

from terrasynth.data.classes import ClassTable


@pytest.fixture
def paired_tiles_root(tmp_path):
    """6 pairs of 32×32 tiles: images/NNNN.png, masks/NNNN.png (palette, classes 0..4), classes.json."""
    return make_paired_tiles(tmp_path / "pairs", n=6, size=32)


@pytest.fixture
def scene_folder_root(tmp_path):
    """3 class folders (forest, river_lake, resident) of 4 tiny JPEGs each."""
    return make_scene_folder(tmp_path / "scenes", ("forest", "river_lake", "resident"), n=4, size=32)


@pytest.fixture
def class_table(tmp_path) -> ClassTable:
    """The LandCover.ai class table, read from a classes.json in the shared data's format."""
    return ClassTable.from_json(write_classes_json(tmp_path / "table"))


@pytest.fixture
def geotiff_mask(tmp_path):
    """A 32×32 class-index GeoTIFF in UTM 33N (0.5 m pixels): left half water (3), right half woodland (2)."""
    mask = np.full((32, 32), 2, np.uint8)
    mask[:, :16] = 3
    return write_geotiff(tmp_path / "mask.tif", mask, UTM_33N, grid_transform())


@pytest.fixture
def geojson_path(tmp_path):
    """Polygon (water), LineString (road) and Point (building) features in UTM 33N over a 32 m square."""
    return write_geojson(tmp_path / "features.geojson", sample_features(), crs=UTM_33N)
