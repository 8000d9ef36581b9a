"""benchmarks/sample_grid.py's choice of tiles."""

from __future__ import annotations

import torch
from tests.benchmark_scripts import load_benchmark


def layout_with_classes(classes: list[int], size: int = 10) -> torch.Tensor:
    layout = torch.zeros(size, size, dtype=torch.long)
    for i, value in enumerate(classes):
        layout[:, i * size // len(classes) :] = value
    return layout


def test_varied_picks_the_layouts_with_most_classes_and_spread_is_evenly_spaced():
    pick_tiles = load_benchmark("sample_grid").pick_tiles
    classes = [[3], [3], [0, 2, 3], [3], [0, 1], [3], [0, 1, 2, 4], [3]]
    data = [{"layout": layout_with_classes(c)} for c in classes]
    assert pick_tiles(data, 3, "varied") == [2, 4, 6]
    assert pick_tiles(data, 4, "spread") == [0, 2, 4, 6]


def test_varied_ignores_classes_under_the_minimum_share():
    pick_tiles = load_benchmark("sample_grid").pick_tiles
    speck = torch.full((10, 10), 3)
    speck[0, 0] = 1  # 1 % of the pixels, under the default 2 %
    two_classes = layout_with_classes([0, 3])
    data = [{"layout": speck}, {"layout": two_classes}]
    assert pick_tiles(data, 1, "varied") == [1]
