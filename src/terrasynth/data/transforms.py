"""Transforms on dict samples: each takes a sample and returns one, moving image and layout together.

A sample's ``georeference`` (``{"crs", "transform"}``), when it has one, moves with the pixels: a crop
shifts the affine transform, a resize scales it, a flip or rotation turns it, so each pixel keeps its place
on the ground.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F


def _with_transform(sample: dict, out: dict, pixel_to_old) -> None:
    """Set ``out``'s georeference transform to ``sample``'s composed with ``pixel_to_old`` (an Affine from
    new pixel coordinates to old ones)."""
    georeference = sample.get("georeference")
    if not isinstance(georeference, dict) or georeference.get("transform") is None:
        return
    from affine import Affine

    old = Affine(*georeference["transform"][:6])
    new = old @ pixel_to_old if hasattr(Affine, "__matmul__") else old * pixel_to_old
    out["georeference"] = {**georeference, "transform": list(new)[:6]}


class RandomCrop:
    def __init__(self, size: int, generator: random.Random | None = None):
        self.size = size
        self.rng = generator or random.Random()

    def __call__(self, sample: dict) -> dict:
        height, width = sample["image"].shape[-2:]
        if height < self.size or width < self.size:
            raise ValueError(f"crop {self.size} is larger than the image {height}×{width}")
        top = self.rng.randint(0, height - self.size)
        left = self.rng.randint(0, width - self.size)
        return crop(sample, top, left, self.size, self.size)


class CenterCrop:
    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: dict) -> dict:
        height, width = sample["image"].shape[-2:]
        if height < self.size or width < self.size:
            raise ValueError(f"crop {self.size} is larger than the image {height}×{width}")
        return crop(sample, (height - self.size) // 2, (width - self.size) // 2, self.size, self.size)


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    out = dict(sample)
    out["image"] = sample["image"][..., top : top + height, left : left + width]
    if "layout" in sample:
        out["layout"] = sample["layout"][..., top : top + height, left : left + width]
    from affine import Affine

    _with_transform(sample, out, Affine.translation(left, top))
    return out


class RandomDihedral:
    """One of the 8 flips/rotations of the square: aerial images have no preferred orientation."""

    def __init__(self, generator: random.Random | None = None):
        self.rng = generator or random.Random()

    def __call__(self, sample: dict) -> dict:
        k, flip = self.rng.randint(0, 3), self.rng.random() < 0.5
        return dihedral(sample, k, flip)


def rotate_flip(value: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """``k`` quarter turns over the last two axes (``torch.rot90``), then a left-right mirror if ``flip``: the
    element (k, flip) of the dihedral group D4 applied to an image, a layout or a batch of them."""
    value = torch.rot90(value, k, (-2, -1))
    return torch.flip(value, (-1,)) if flip else value


def dihedral(sample: dict, k: int, flip: bool) -> dict:
    """Rotate image and layout by ``k`` quarter turns (``torch.rot90``), then mirror left-right if
    ``flip``."""
    out = dict(sample)
    for key in ("image", "layout"):
        if key in out:
            out[key] = rotate_flip(out[key], k, flip)
    if (k % 4 or flip) and isinstance(sample.get("georeference"), dict):
        from affine import Affine

        height, width = sample["image"].shape[-2:]
        rows = torch.arange(height).view(height, 1).expand(height, width)
        cols = torch.arange(width).view(1, width).expand(height, width)
        new_rows, new_cols = rotate_flip(rows, k, flip), rotate_flip(cols, k, flip)
        # The linear part does not depend on the size: read it off a 2×2 grid, then place the first pixel.
        r2 = rotate_flip(torch.tensor([[0, 0], [1, 1]]), k, flip)
        c2 = rotate_flip(torch.tensor([[0, 1], [0, 1]]), k, flip)
        m00, m01 = int(c2[0, 1] - c2[0, 0]), int(c2[1, 0] - c2[0, 0])
        m10, m11 = int(r2[0, 1] - r2[0, 0]), int(r2[1, 0] - r2[0, 0])
        # Pixel centres: new (0.5, 0.5) lands on old (col + 0.5, row + 0.5) of the first new pixel.
        tx = float(new_cols[0, 0]) + 0.5 - 0.5 * (m00 + m01)
        ty = float(new_rows[0, 0]) + 0.5 - 0.5 * (m10 + m11)
        _with_transform(sample, out, Affine(m00, m01, tx, m10, m11, ty))
    return out


class Resize:
    """Resize image (antialiased bilinear) and layout (nearest) to ``size`` × ``size``."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        image = sample["image"]
        height, width = image.shape[-2:]
        if (height, width) != (self.size, self.size):
            out["image"] = F.interpolate(
                image[None], (self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )[0].clamp(0, 1)
            from affine import Affine

            _with_transform(sample, out, Affine.scale(width / self.size, height / self.size))
        if "layout" in sample and tuple(sample["layout"].shape[-2:]) != (self.size, self.size):
            out["layout"] = F.interpolate(sample["layout"][None, None].float(), (self.size, self.size), mode="nearest")[
                0, 0
            ].long()
        return out


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample: dict) -> dict:
        for transform in self.transforms:
            sample = transform(sample)
        return sample
