"""Measurements of visible defects that distribution metrics miss: magenta specks, and hand-drawn layouts whose
thin or small features are not drawn. Pure functions of image and class tensors.

- :func:`magenta_share`: the share of pixels whose HSV hue lies in a magenta/purple band with high saturation and
  value. The shipped decoder draws small saturated magenta dots, even when it decodes real tiles' own latents;
  real aerial tiles almost never hold such pixels, so the generated ÷ real ratio of this share finds them again.
- :func:`component_coverage`: for each connected component of a class in a layout (a building, a river), the
  share of its pixels that a segmenter labels with that class; a component is *drawn* when that share reaches a
  bound.
- :func:`class_appearance`: how bright and how textured the pixels a layout gives one class are (water drawn as a
  dark, flat blob): the mean luma and the mean local spread of luma inside the class, edges shaved off. Its ratio,
  generated ÷ real on the same layouts, finds that defect again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# The band and bounds, chosen on real tiles (docs/realism.md, "Magenta specks"): hue 280°–340° (purple to
# magenta, clear of red roofs at 340°–20° and of blue-green water at 160°–250°); saturation ≥ 0.25, the lowest
# bound at which the purple-hued pixels of 300 LandCover.ai train tiles fall under 1 in a million (5e-7; the
# test tiles hold none, the val tiles 3e-7); value ≥ 0.2, since hue is unstable in near-black pixels.
MAGENTA_HUE = (280.0, 340.0)
MAGENTA_MIN_SATURATION = 0.25
MAGENTA_MIN_VALUE = 0.2


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """…×3×H×W RGB in [0, 1] → …×3×H×W (hue in degrees [0, 360), saturation and value in [0, 1]); grey pixels
    (max = min) get hue 0 and saturation 0."""
    r, g, b = images.float().clamp(0, 1).unbind(-3)
    value, _ = torch.stack([r, g, b], -3).max(-3)
    low, _ = torch.stack([r, g, b], -3).min(-3)
    chroma = value - low
    saturation = torch.where(value > 0, chroma / value.clamp(min=1e-12), torch.zeros_like(value))
    safe = chroma.clamp(min=1e-12)
    hue = torch.where(
        value == r,
        ((g - b) / safe) % 6,
        torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(chroma > 0, hue * 60.0, torch.zeros_like(hue)) % 360.0
    return torch.stack([hue, saturation, value], -3)


def magenta_mask(
    images: torch.Tensor,
    hue: tuple[float, float] = MAGENTA_HUE,
    min_saturation: float = MAGENTA_MIN_SATURATION,
    min_value: float = MAGENTA_MIN_VALUE,
) -> torch.Tensor:
    """…×H×W bool: pixels of ``images`` (…×3×H×W in [0, 1]) with hue in [hue[0], hue[1]] degrees, saturation ≥
    ``min_saturation`` and value ≥ ``min_value``."""
    h, s, v = rgb_to_hsv(images).unbind(-3)
    return (h >= hue[0]) & (h <= hue[1]) & (s >= min_saturation) & (v >= min_value)


def magenta_share(
    images: torch.Tensor,
    hue: tuple[float, float] = MAGENTA_HUE,
    min_saturation: float = MAGENTA_MIN_SATURATION,
    min_value: float = MAGENTA_MIN_VALUE,
) -> float:
    """The share of all pixels of ``images`` (N×3×H×W or 3×H×W, [0, 1]) in the magenta band."""
    return float(magenta_mask(images, hue, min_saturation, min_value).float().mean())


def magenta_ratio(generated_share: float, real_share: float, real_pixels: int) -> tuple[float, bool]:
    """Generated ÷ real magenta share. Real tiles often hold no magenta pixel at all; the real share is then taken
    as one pixel of the real set (``1 / real_pixels``) and the ratio returned is a lower bound (flag True)."""
    if real_pixels < 1:
        raise ValueError("real_pixels must be positive")
    floor = 1.0 / real_pixels
    return generated_share / max(real_share, floor), real_share < floor


def magenta_image_share(images: torch.Tensor, min_pixels: int = 4, **bounds) -> float:
    """The share of images (N×3×H×W) holding at least ``min_pixels`` magenta pixels: how many images show a
    speck, where :func:`magenta_share` says how much of the area is specks."""
    counts = magenta_mask(images, **bounds).flatten(1).sum(1)
    return float((counts >= min_pixels).float().mean())


@dataclass(frozen=True)
class ComponentCoverage:
    """Per connected component of one class in a layout: its size in pixels and the share of it predicted as
    that class."""

    sizes: tuple[int, ...]
    covered: tuple[float, ...]

    def drawn(self, bound: float = 0.5) -> int:
        return sum(share >= bound for share in self.covered)

    def __len__(self) -> int:
        return len(self.sizes)


def component_coverage(predicted: torch.Tensor, layout: torch.Tensor, class_index: int) -> ComponentCoverage:
    """For each 8-connected component of ``class_index`` in ``layout`` (H×W class ids), its size and the share
    of its pixels that ``predicted`` (H×W class ids) labels ``class_index``. Largest component first."""
    from scipy import ndimage

    target = np.asarray(layout) == class_index
    hit = np.asarray(predicted) == class_index
    labels, count = ndimage.label(target, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return ComponentCoverage((), ())
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    hits = np.bincount(labels.ravel(), weights=hit.ravel().astype(np.float64), minlength=count + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    return ComponentCoverage(tuple(int(sizes[i]) for i in order), tuple(float(hits[i] / sizes[i]) for i in order))


@dataclass(frozen=True)
class ClassAppearance:
    """Of the pixels layouts give one class (edges shaved off): mean luma (0–1), mean local standard deviation of
    luma in ``window``-px squares, and how many pixels were read."""

    luma: float
    texture: float
    pixels: int


def _class_sums(image, layout, class_index: int, erosion: int, window: int) -> tuple[float, float, int]:
    """Sums of luma and of local luma spread over one image's pixels of ``class_index`` (eroded), and their count."""
    from scipy import ndimage

    rgb = np.asarray(image, np.float64)
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    inside = np.asarray(layout) == class_index
    if erosion:
        inside = ndimage.binary_erosion(inside, iterations=erosion)
    if not inside.any():
        return 0.0, 0.0, 0
    mean = ndimage.uniform_filter(luma, window, mode="reflect")
    spread = np.sqrt(np.maximum(ndimage.uniform_filter(luma**2, window, mode="reflect") - mean**2, 0.0))
    return float(luma[inside].sum()), float(spread[inside].sum()), int(inside.sum())


def class_appearance(
    images: torch.Tensor | list[torch.Tensor],
    layouts: torch.Tensor | list[torch.Tensor],
    class_index: int,
    erosion: int = 2,
    window: int = 5,
) -> ClassAppearance:
    """Mean luma and local texture of ``images`` (N×3×H×W in [0, 1]) inside ``class_index`` of ``layouts`` (N×H×W
    class ids), each class region eroded by ``erosion`` px so that shore pixels, half one class and half another,
    do not count. NaNs (and 0 pixels) when no layout holds the class."""
    sums = np.array([_class_sums(x, y, class_index, erosion, window) for x, y in zip(images, layouts)])
    return _appearance(sums.reshape(-1, 3))


def _appearance(sums: np.ndarray) -> ClassAppearance:
    """Pooled over images: rows of (luma sum, texture sum, pixel count)."""
    count = int(sums[:, 2].sum())
    if count == 0:
        return ClassAppearance(float("nan"), float("nan"), 0)
    return ClassAppearance(float(sums[:, 0].sum() / count), float(sums[:, 1].sum() / count), count)


def appearance_ratios(
    generated: torch.Tensor | list[torch.Tensor],
    real: torch.Tensor | list[torch.Tensor],
    layouts: torch.Tensor | list[torch.Tensor],
    class_index: int,
    resamples: int = 2000,
    seed: int = 0,
    erosion: int = 2,
    window: int = 5,
) -> dict:
    """Generated ÷ real mean luma and texture inside ``class_index``, the images paired by layout, with 95 %
    bootstrap intervals over layouts (resampled with replacement, pairs kept together), and each set's
    :class:`ClassAppearance` (``generated``, ``real``, as dicts). Ratios None when no layout holds the class."""
    pairs = [
        (_class_sums(g, y, class_index, erosion, window), _class_sums(r, y, class_index, erosion, window))
        for g, r, y in zip(generated, real, layouts)
    ]
    gen = np.array([p[0] for p in pairs], np.float64).reshape(-1, 3)
    ref = np.array([p[1] for p in pairs], np.float64).reshape(-1, 3)
    looks = {"generated": vars(_appearance(gen)), "real": vars(_appearance(ref))}
    if ref[:, 2].sum() == 0:
        return {**looks, "luma_ratio": None, "luma_interval": None, "texture_ratio": None, "texture_interval": None}

    def ratios(rows):
        g, r = gen[rows].sum(0), ref[rows].sum(0)
        return g[0] / r[0], g[1] / r[1]  # the counts are the same layouts' pixels, so they cancel

    rng = np.random.default_rng(seed)
    holding = np.flatnonzero(ref[:, 2] > 0)
    draws = np.array([ratios(rng.choice(holding, len(holding))) for _ in range(resamples)])
    luma, texture = ratios(holding)
    return {
        **looks,
        "luma_ratio": float(luma),
        "luma_interval": [float(v) for v in np.percentile(draws[:, 0], [2.5, 97.5])],
        "texture_ratio": float(texture),
        "texture_interval": [float(v) for v in np.percentile(draws[:, 1], [2.5, 97.5])],
    }
