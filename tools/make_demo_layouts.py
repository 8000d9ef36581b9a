"""Draw the demo's bundled layouts (written for the project, not taken from any dataset).

python tools/make_demo_layouts.py src/terrasynth/assets/demo
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from terrasynth.data.classes import LANDCOVER_AI

BACKGROUND, BUILDING, WOODLAND, WATER, ROAD = range(5)


def river_village(size: int = 256) -> np.ndarray:
    image = Image.new("L", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.polygon([(0, 0), (150, 0), (110, 90), (0, 120)], fill=WOODLAND)
    river = [(0, 200), (60, 180), (120, 196), (180, 170), (256, 150)]
    draw.line(river, fill=WATER, width=22)
    draw.line([(0, 70), (256, 110)], fill=ROAD, width=7)
    for x, y in [(160, 60), (190, 70), (215, 62), (170, 90), (205, 95)]:
        draw.rectangle([x, y, x + 14, y + 11], fill=BUILDING)
    return np.asarray(image)


def lake_and_forest(size: int = 256) -> np.ndarray:
    image = Image.new("L", (size, size), WOODLAND)
    draw = ImageDraw.Draw(image)
    draw.ellipse([60, 50, 200, 170], fill=WATER)
    draw.rectangle([0, 200, 256, 256], fill=BACKGROUND)
    draw.line([(0, 196), (256, 204)], fill=ROAD, width=6)
    return np.asarray(image)


def fields_geojson() -> dict:
    """Fields, a wood, a pond, a road and houses near Łódź, in UTM zone 34N (EPSG:32634), 128 m square."""
    x0, y0 = 380000.0, 5740000.0

    def box(x, y, w, h):
        return [
            [
                [x0 + x, y0 + y],
                [x0 + x + w, y0 + y],
                [x0 + x + w, y0 + y + h],
                [x0 + x, y0 + y + h],
                [x0 + x, y0 + y],
            ]
        ]

    features = [
        ("background", "Polygon", box(0, 0, 128, 128)),
        ("woodland", "Polygon", [[[x0, y0 + 80], [x0 + 70, y0 + 128], [x0, y0 + 128], [x0, y0 + 80]]]),
        ("water", "Polygon", box(80, 20, 30, 22)),
        ("building", "Polygon", box(20, 30, 8, 6)),
        ("building", "Polygon", box(34, 28, 7, 9)),
        ("road", "LineString", [[x0, y0 + 60], [x0 + 128, y0 + 52]]),
    ]
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32634"}},
        "features": [
            {
                "type": "Feature",
                "properties": {"class": name},
                "geometry": {"type": kind, "coordinates": coords},
            }
            for name, kind, coords in features
        ],
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    palette = [v for c in LANDCOVER_AI.display_colors for v in c]
    for name, mask in (("river_village", river_village()), ("lake_and_forest", lake_and_forest())):
        image = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
        image.putpalette(palette + [0] * (768 - len(palette)))
        image.save(out / f"{name}.png")
    (out / "fields_utm34.geojson").write_text(json.dumps(fields_geojson(), indent=1))
    (out / "classes.json").write_text(LANDCOVER_AI.to_json())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
