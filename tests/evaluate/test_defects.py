"""Defect measurements on hand-computed examples: the magenta-speck share, the per-component coverage and the
appearance of one class's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terrasynth.evaluate.defects import (
    component_coverage,
    magenta_image_share,
    magenta_mask,
    magenta_ratio,
    magenta_share,
    rgb_to_hsv,
)


def _pixels(*rgb) -> torch.Tensor:
    """A 1×3×1×N image of the given RGB pixels."""
    return torch.tensor(rgb, dtype=torch.float32).T[None, :, None, :]


def test_rgb_to_hsv_on_hand_computed_pixels():
    # magenta, red, grey, and (0.6, 0.3, 0.9): max b, chroma 0.6, hue 60 * ((r - g) / c + 4) = 270, s = 2/3
    hsv = rgb_to_hsv(_pixels((1, 0, 1), (1, 0, 0), (0.5, 0.5, 0.5), (0.6, 0.3, 0.9)))[0, :, 0].T
    assert hsv.tolist()[0] == pytest.approx([300, 1, 1])
    assert hsv.tolist()[1] == pytest.approx([0, 1, 1])
    assert hsv.tolist()[2] == pytest.approx([0, 0, 0.5])
    assert hsv.tolist()[3] == pytest.approx([270, 2 / 3, 0.9])


def test_magenta_share_counts_only_saturated_bright_magenta():
    image = _pixels(
        (1.0, 0.0, 1.0),  # hue 300, s 1, v 1: in
        (0.5, 0.4, 0.5),  # hue 300, s 0.2 (< 0.25): out
        (1.0, 0.0, 0.0),  # red, hue 0: out
        (0.15, 0.0, 0.15),  # hue 300, s 1, v 0.15 (< 0.2): out
        (0.6, 0.3, 0.9),  # hue 270 (< 280, violet-blue): out
        (0.9, 0.2, 0.55),  # hue 330, s 0.78, v 0.9: in
        (0.2, 0.5, 0.6),  # teal water, hue 195: out
        (0.3, 0.3, 0.3),  # grey: out
    )
    assert magenta_mask(image)[0, 0].tolist() == [True, False, False, False, False, True, False, False]
    assert magenta_share(image) == pytest.approx(2 / 8)
    # looser bounds take the low-saturation pixel too
    assert magenta_share(image, min_saturation=0.1) == pytest.approx(3 / 8)


def test_magenta_ratio_takes_one_real_pixel_when_real_tiles_hold_none():
    assert magenta_ratio(0.002, 0.001, 1000) == (pytest.approx(2.0), False)
    ratio, lower_bound = magenta_ratio(0.01, 0.0, 1000)
    assert ratio == pytest.approx(10.0) and lower_bound
    with pytest.raises(ValueError):
        magenta_ratio(0.1, 0.0, 0)


def test_magenta_image_share_counts_images_with_a_speck():
    images = torch.full((4, 3, 8, 8), 0.4)
    images[1, :, 2:4, 2:4] = torch.tensor([1.0, 0.0, 1.0])[:, None, None]  # a 2×2 speck: 4 pixels
    images[2, :, 0, 0] = torch.tensor([1.0, 0.0, 1.0])  # 1 pixel: under min_pixels
    assert magenta_image_share(images) == pytest.approx(1 / 4)
    assert magenta_image_share(images, min_pixels=1) == pytest.approx(2 / 4)


def test_component_coverage_per_building():
    layout = torch.zeros(6, 8, dtype=torch.long)
    layout[0:2, 0:2] = 1  # building A: 4 px
    layout[3:6, 4:8] = 1  # building B: 12 px
    predicted = torch.zeros_like(layout)
    predicted[3:6, 4:6] = 1  # half of B
    predicted[0, 0] = 1  # a quarter of A
    coverage = component_coverage(predicted, layout, 1)
    assert coverage.sizes == (12, 4) and coverage.covered == pytest.approx((0.5, 0.25))
    assert coverage.drawn() == 1 and coverage.drawn(0.2) == 2 and len(coverage) == 2
    assert len(component_coverage(predicted, layout, 3)) == 0


def test_diagonal_pixels_are_one_component():
    layout = torch.eye(4, dtype=torch.long) * 3  # a one-pixel-wide diagonal river
    assert component_coverage(layout, layout, 3).sizes == (4,)


def test_class_appearance_sees_a_dark_flat_blob_where_the_layout_has_water():
    """Water drawn as a dark, flat blob: lower luma and far less local texture inside the layout's water than a
    textured, brighter rendering of the same layout; edges are shaved off, and a class no layout holds gives NaN."""
    from terrasynth.evaluate.defects import class_appearance

    rng = np.random.default_rng(0)
    layouts = torch.zeros(3, 32, 32, dtype=torch.long)
    layouts[:, 8:24, 8:24] = 3
    textured = torch.from_numpy(np.clip(0.5 + 0.1 * rng.standard_normal((3, 3, 32, 32)), 0, 1)).float()
    blob = textured.clone()
    blob[:, :, 8:24, 8:24] = 0.1
    real, fake = class_appearance(textured, layouts, 3), class_appearance(blob, layouts, 3)
    assert fake.pixels == real.pixels == 3 * 12 * 12  # 16 × 16 shaved by 2 px on each side
    assert fake.luma == pytest.approx(0.1) and real.luma == pytest.approx(0.5, abs=0.02)
    assert fake.texture < 0.2 * real.texture
    # the reference: mean luma and 5×5 spread read directly inside the eroded square
    luma = 0.299 * textured[0, 0] + 0.587 * textured[0, 1] + 0.114 * textured[0, 2]
    assert class_appearance(textured[:1], layouts[:1], 3).luma == pytest.approx(float(luma[10:22, 10:22].mean()))
    spreads = [
        float(luma[r - 2 : r + 3, c - 2 : c + 3].double().std(unbiased=False))
        for r in range(10, 22)
        for c in range(10, 22)
    ]
    assert class_appearance(textured[:1], layouts[:1], 3).texture == pytest.approx(np.mean(spreads), rel=1e-6)
    empty = class_appearance(textured, layouts, 1)
    assert empty.pixels == 0 and np.isnan(empty.luma)


def test_appearance_ratios_pair_images_by_layout_and_bound_the_ratio():
    """Generated ÷ real luma and texture inside one class, paired by layout, with a bootstrap interval: the same
    images give exactly 1; a dark, flat blob in every image gives ratios whose whole interval lies below 1."""
    from terrasynth.evaluate.defects import appearance_ratios

    rng = np.random.default_rng(1)
    layouts = torch.zeros(12, 32, 32, dtype=torch.long)
    layouts[:, 4:28, 4:28] = 3
    real = torch.from_numpy(np.clip(0.4 + 0.1 * rng.standard_normal((12, 3, 32, 32)), 0, 1)).float()
    same = appearance_ratios(real, real, layouts, 3, resamples=200)
    assert same["luma_ratio"] == pytest.approx(1.0) and same["luma_interval"] == pytest.approx([1.0, 1.0])
    dark = real.clone()
    dark[:, :, 4:28, 4:28] = 0.5 * dark[:, :, 4:28, 4:28].mean() + 0.02 * torch.rand(12, 3, 24, 24)
    ratios = appearance_ratios(dark, real, layouts, 3, resamples=200)
    assert ratios["luma_interval"][1] < 1 and ratios["texture_interval"][1] < 0.5
    assert ratios["luma_interval"][0] <= ratios["luma_ratio"] <= ratios["luma_interval"][1]
    assert appearance_ratios(dark, real, layouts, 1)["luma_ratio"] is None
