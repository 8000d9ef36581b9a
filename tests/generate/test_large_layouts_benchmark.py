"""benchmarks/large_layouts.py: its scene layout and its seam measure (the timed runs are the benchmark's)."""

from __future__ import annotations

import numpy as np
from tests.benchmark_scripts import load_benchmark

large_layouts = load_benchmark("large_layouts")


def test_the_scene_layout_is_the_same_for_a_seed_and_holds_every_class():
    layout = large_layouts.scene_layout(512, seed=3)
    assert layout.shape == (512, 512) and layout.dtype == np.uint8
    assert set(np.unique(layout)) == set(range(5))
    assert np.array_equal(layout, large_layouts.scene_layout(512, seed=3))


def test_the_seam_measure_sees_a_step_at_a_window_edge_and_none_in_a_smooth_image():
    rng = np.random.default_rng(0)
    image = rng.integers(100, 110, (512, 512, 3)).astype(np.uint8)
    at_edges, elsewhere, _ = large_layouts.seam_contrast(image, draws=200)
    assert abs(at_edges - elsewhere) < 0.2 * elsewhere
    image[:, 128:] += 20  # a brightness step where the second 256-px window of a 512-px scene starts (x = 128)
    at_edges, elsewhere, percentile = large_layouts.seam_contrast(image, draws=200)
    assert at_edges > elsewhere + 2 and percentile == 100
