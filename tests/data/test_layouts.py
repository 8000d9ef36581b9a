import json

import numpy as np
import pytest
import torch
from tests.fakes import (
    ORIGIN_X,
    ORIGIN_Y,
    UTM_33N,
    feature,
    grid_transform,
    polygon,
    sample_features,
    write_geojson,
    write_geotiff,
    write_mask_png,
    write_rgb,
)

from terrasynth.data.classes import LANDCOVER_AI
from terrasynth.data.layouts import (
    Layout,
    TileGrid,
    load_layout,
    one_hot_layout,
    rasterize_geojson,
    snap_to_palette,
)
from terrasynth.errors import InputError

# The 32 m square of sample_features() as a 32×32 grid of 1 m pixels.
GRID = TileGrid((ORIGIN_X, ORIGIN_Y - 32, ORIGIN_X + 32, ORIGIN_Y), 32, 32, UTM_33N)
BACKGROUND, BUILDING, WATER, ROAD = 0, 1, 3, 4


def test_rasterize_burns_each_class_where_its_feature_is(geojson_path):
    layout = rasterize_geojson(geojson_path, LANDCOVER_AI, GRID)
    classes = layout.classes
    assert classes.shape == (32, 32) and classes.dtype == torch.int64
    assert classes[20, 4] == WATER  # inside the polygon (left half)
    assert classes[20, 28] == BACKGROUND  # outside every feature
    assert classes[8, 28] == ROAD  # the line across at a quarter of the height, right half
    assert classes[8, 4] == ROAD  # drawn after the polygon, so on top of it
    assert classes[25, 25] == BUILDING  # the point, buffered to a few pixels
    assert (classes == WATER).float().mean() == pytest.approx(0.5 - 3 / 64, abs=0.03)


def test_rasterize_keeps_the_grid_georeference(geojson_path):
    layout = rasterize_geojson(geojson_path, LANDCOVER_AI, GRID)
    assert isinstance(layout, Layout)
    assert layout.georeference["crs"] == UTM_33N
    assert layout.georeference["transform"] == pytest.approx(list(GRID.transform)[:6])
    assert layout.georeference["transform"] == pytest.approx(list(grid_transform(pixel=1.0))[:6])
    assert layout.source == str(geojson_path)


def test_rasterize_without_a_grid_covers_the_features(geojson_path):
    layout = rasterize_geojson(geojson_path, LANDCOVER_AI, size=16)
    assert layout.shape == (16, 16)
    assert set(layout.classes.unique().tolist()) == {BACKGROUND, BUILDING, WATER, ROAD}
    assert layout.georeference["crs"] == UTM_33N


def test_a_grid_in_another_crs_is_an_input_error(geojson_path):
    grid = TileGrid((15.0, 50.0, 15.001, 50.001), 8, 8, "EPSG:4326")
    with pytest.raises(InputError, match="GeoJSON CRS EPSG:32633 does not match the grid CRS EPSG:4326") as caught:
        rasterize_geojson(geojson_path, LANDCOVER_AI, grid)
    assert caught.value.path == geojson_path


def test_geojson_without_a_crs_is_wgs84(tmp_path):
    path = write_geojson(tmp_path / "f.geojson", [feature(polygon(15.0, 50.0, 15.001, 50.001), "water")])
    grid = TileGrid((15.0, 50.0, 15.001, 50.001), 8, 8, "EPSG:4326")
    assert bool((rasterize_geojson(path, LANDCOVER_AI, grid).classes == WATER).all())
    with pytest.raises(InputError, match="does not match"):
        rasterize_geojson(path, LANDCOVER_AI, GRID)


def test_the_old_epsg_code_crs_spelling_is_read(tmp_path):
    path = tmp_path / "f.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "EPSG", "properties": {"code": 32633}},
                "features": sample_features(),
            }
        )
    )
    assert rasterize_geojson(path, LANDCOVER_AI, GRID).classes[20, 4] == WATER


@pytest.mark.parametrize(
    "content, problem",
    [
        ({"type": "FeatureCollection", "features": []}, "no features with geometry"),
        (
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": None, "properties": {"class": "water"}}],
            },
            "no features",
        ),
        ({"type": "Polygon", "coordinates": []}, "expected a FeatureCollection"),
        ([1, 2], "not a GeoJSON object"),
    ],
)
def test_geojson_without_usable_features_is_an_input_error(tmp_path, content, problem):
    path = tmp_path / "f.geojson"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=problem) as caught:
        rasterize_geojson(path, LANDCOVER_AI, GRID)
    assert caught.value.path == path


@pytest.mark.parametrize(
    "properties, problem",
    [
        ({}, "no 'class' property"),
        ({"class": "lava"}, "unknown class 'lava'"),
        ({"class": 9}, "class id 9 outside"),
    ],
)
def test_features_with_a_bad_class_are_input_errors(tmp_path, properties, problem):
    features = [
        {
            "type": "Feature",
            "geometry": polygon(ORIGIN_X, ORIGIN_Y - 8, ORIGIN_X + 8, ORIGIN_Y),
            "properties": properties,
        }
    ]
    path = write_geojson(tmp_path / "f.geojson", features, UTM_33N)
    with pytest.raises(InputError, match=problem):
        rasterize_geojson(path, LANDCOVER_AI, GRID)


def test_invalid_or_empty_geometry_is_an_input_error(tmp_path):
    path = write_geojson(tmp_path / "a.geojson", [feature({"type": "Polygon", "coordinates": [[1, 2]]}, "water")])
    with pytest.raises(InputError, match="feature 0 has invalid geometry"):
        rasterize_geojson(path, LANDCOVER_AI)
    path = write_geojson(tmp_path / "b.geojson", [feature({"type": "Polygon", "coordinates": []}, "water")])
    with pytest.raises(InputError, match="feature 0 has an empty geometry"):
        rasterize_geojson(path, LANDCOVER_AI)


def test_class_values_may_be_ids_any_case_names_or_mapped(tmp_path):
    square = polygon(ORIGIN_X, ORIGIN_Y - 32, ORIGIN_X + 32, ORIGIN_Y)
    for value, class_map in ((2, None), ("2", None), ("Woodland", None), ("Forest", {"Forest": "woodland"})):
        path = write_geojson(tmp_path / "f.geojson", [feature(square, value)], UTM_33N)
        layout = rasterize_geojson(path, LANDCOVER_AI, GRID, class_map=class_map)
        assert bool((layout.classes == 2).all()), value


def test_snap_to_palette_maps_anti_aliased_colours_to_the_nearest_class():
    palette = LANDCOVER_AI.colors
    truth = np.random.default_rng(0).integers(0, 5, (16, 16))
    rgb = np.asarray(palette, np.int16)[truth]
    rgb = rgb + np.random.default_rng(1).integers(-10, 11, rgb.shape)  # JPEG and anti-aliasing noise
    snapped = snap_to_palette(np.clip(rgb, 0, 255).astype(np.uint8), palette)
    assert snapped.dtype == torch.int64 and snapped.shape == (16, 16)
    assert np.array_equal(snapped.numpy(), truth)
    # A blend of two class colours goes to the nearer one.
    edge = np.array([[[60, 60, 60], [150, 150, 150]]], np.uint8)
    assert snap_to_palette(edge, palette).tolist() == [[2, 3]]


def test_snap_to_palette_checks_the_distance_and_the_shape(tmp_path):
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    with pytest.raises(InputError, match="from every class colour") as caught:
        snap_to_palette(red, LANDCOVER_AI.colors, max_distance=40, path=tmp_path / "map.png")
    assert caught.value.path == tmp_path / "map.png"
    rgba = np.full((2, 3, 4), 255, np.uint8)
    assert snap_to_palette(rgba, LANDCOVER_AI.colors).tolist() == [[4, 4, 4], [4, 4, 4]]
    with pytest.raises(InputError, match="H×W×3"):
        snap_to_palette(np.zeros((4, 4), np.uint8), LANDCOVER_AI.colors)


@pytest.mark.parametrize("mode", ["P", "L"])
def test_load_layout_reads_a_mask_png(tmp_path, mode):
    mask = (np.arange(64, dtype=np.uint8).reshape(8, 8) // 13) % 5
    layout = load_layout(write_mask_png(tmp_path / "m.png", mask, mode), LANDCOVER_AI)
    assert np.array_equal(layout.classes.numpy(), mask)
    assert layout.georeference is None and layout.class_table is LANDCOVER_AI


def test_load_layout_snaps_an_rgb_colour_map(tmp_path):
    table = LANDCOVER_AI.__class__(("field", "road", "water"), ((240, 220, 90), (120, 120, 120), (38, 110, 200)))
    truth = np.zeros((8, 8), np.int64)
    truth[:, 3:5], truth[6:] = 1, 2
    rgb = np.asarray(table.colors, np.int16)[truth] + 6
    layout = load_layout(write_rgb(tmp_path / "map.png", np.clip(rgb, 0, 255)), table)
    assert np.array_equal(layout.classes.numpy(), truth)


def test_load_layout_keeps_the_georeference_of_a_geotiff(tmp_path, geotiff_mask):
    layout = load_layout(geotiff_mask, LANDCOVER_AI)
    assert layout.classes[0, 0] == WATER and layout.classes[0, 31] == 2
    assert layout.georeference["crs"] == UTM_33N
    assert layout.georeference["transform"] == pytest.approx(list(grid_transform())[:6])
    colour_map = np.asarray(LANDCOVER_AI.colors, np.uint8)[layout.classes.numpy()]
    from_map = load_layout(write_geotiff(tmp_path / "map.tif", colour_map), LANDCOVER_AI)
    assert torch.equal(from_map.classes, layout.classes)
    assert from_map.georeference == layout.georeference


def test_load_layout_rasterises_geojson(geojson_path):
    layout = load_layout(geojson_path, LANDCOVER_AI, GRID)
    assert torch.equal(layout.classes, rasterize_geojson(geojson_path, LANDCOVER_AI, GRID).classes)


def test_load_layout_of_an_unknown_format_or_bad_mask_is_an_input_error(tmp_path):
    (tmp_path / "layout.csv").write_text("0,1")
    with pytest.raises(InputError, match="unknown layout format '.csv'"):
        load_layout(tmp_path / "layout.csv", LANDCOVER_AI)
    path = write_mask_png(tmp_path / "m.png", np.full((4, 4), 9, np.uint8), "L")
    with pytest.raises(InputError, match="outside the class table") as caught:
        load_layout(path, LANDCOVER_AI)
    assert caught.value.path == path


def test_layout_shares_and_one_hot():
    classes = torch.tensor([[0, 0], [3, 4]])
    layout = Layout(classes, LANDCOVER_AI)
    assert layout.shares() == {
        "background": 0.5,
        "building": 0.0,
        "woodland": 0.0,
        "water": 0.25,
        "road": 0.25,
    }
    with_no_data = Layout(torch.tensor([[0, 255], [3, -1]]), LANDCOVER_AI).shares()
    assert with_no_data["background"] == with_no_data["water"] == 0.5
    onehot = one_hot_layout(classes, 5)
    assert onehot.shape == (5, 2, 2) and onehot.dtype == torch.float32
    assert torch.equal(onehot.sum(0), torch.ones(2, 2)) and torch.equal(onehot.argmax(0), classes)
    assert one_hot_layout(torch.stack([classes, classes]), 5).shape == (2, 5, 2, 2)


def test_tile_grid_rejects_empty_bounds():
    with pytest.raises(ValueError, match="right > left"):
        TileGrid((1.0, 0.0, 0.0, 1.0))


def test_a_photo_given_as_a_colour_map_is_refused(tmp_path):
    photo = np.random.default_rng(0).integers(60, 200, (32, 32, 3)).astype(np.uint8)
    path = write_rgb(tmp_path / "photo.jpg", photo)
    with pytest.raises(InputError, match="photo.jpg.*colour-coded map"):
        load_layout(path, LANDCOVER_AI)
