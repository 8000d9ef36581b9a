"""Baseline generators for the realism table, each with ``generate(layout, seed) -> 3×H×W image in [0, 1]``.

(a) ``ColourFill``: each pixel gets its class's mean colour plus Gaussian noise with the class's per-channel
    standard deviation (both estimated from training pairs), blurred slightly so the noise has some texture.
(b) ``NearestLayoutRetrieval``: the training tile whose layout is closest (class histogram + 8×8 down-sampled
    one-hot, L2), resized to the layout's size. It returns real pixels, so it scores well on distribution
    metrics and is what the memorisation check must flag.
(c) ``Pix2PixBaseline``: a trained pix2pix generator (:mod:`terrasynth.models.pix2pix`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from ..data.layouts import class_shares
from ..errors import InputError


class BaselineGenerator(Protocol):
    name: str

    def generate(self, layout: torch.Tensor, seed: int = 0) -> torch.Tensor: ...


def _check_training(images, layouts):
    if len(images) == 0 or len(images) != len(layouts):
        raise InputError(None, f"baselines need training pairs (got {len(images)} images, {len(layouts)} layouts)")


class ColourFill:
    name = "colour fill + noise"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.mean = torch.full((num_classes, 3), 0.5)
        self.std = torch.full((num_classes, 3), 0.1)

    def fit(self, images, layouts) -> ColourFill:
        _check_training(images, layouts)
        total = torch.zeros(self.num_classes, 3, dtype=torch.float64)
        squares = torch.zeros_like(total)
        counts = torch.zeros(self.num_classes, dtype=torch.float64)
        for image, layout in zip(images, layouts):
            pixels = image.reshape(3, -1).T.double()
            labels = layout.reshape(-1).long().clamp(0, self.num_classes - 1)
            counts += torch.bincount(labels, minlength=self.num_classes).double()
            total.index_add_(0, labels, pixels)
            squares.index_add_(0, labels, pixels**2)
        seen = counts > 0
        mean = total[seen] / counts[seen, None]
        self.mean[seen] = mean.float()
        self.std[seen] = (squares[seen] / counts[seen, None] - mean**2).clamp(min=0).sqrt().float()
        return self

    def generate(self, layout: torch.Tensor, seed: int = 0) -> torch.Tensor:
        layout = layout.long().clamp(0, self.num_classes - 1)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, 3, *layout.shape, generator=generator)
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
        noise = F.conv2d(F.pad(noise, (1, 1, 1, 1), mode="reflect"), kernel, groups=3)[0] / 0.375  # back to unit std
        image = self.mean[layout].permute(2, 0, 1) + self.std[layout].permute(2, 0, 1) * noise
        return image.clamp(0, 1)


def layout_descriptor(layout: torch.Tensor, num_classes: int, grid: int = 8) -> torch.Tensor:
    """Class histogram followed by the one-hot layout averaged onto a ``grid``×``grid`` raster."""
    onehot = F.one_hot(layout.long().clamp(0, num_classes - 1), num_classes).permute(2, 0, 1).float()[None]
    coarse = F.adaptive_avg_pool2d(onehot, grid)[0]
    return torch.cat([class_shares(layout, num_classes), coarse.flatten() / grid])


class NearestLayoutRetrieval:
    name = "nearest-layout retrieval"

    def __init__(self, num_classes: int, grid: int = 8):
        self.num_classes = num_classes
        self.grid = grid

    def fit(self, images, layouts) -> NearestLayoutRetrieval:
        _check_training(images, layouts)
        self.images = list(images)
        self.descriptors = torch.stack([layout_descriptor(lay, self.num_classes, self.grid) for lay in layouts])
        return self

    def nearest(self, layout: torch.Tensor) -> int:
        query = layout_descriptor(layout, self.num_classes, self.grid)
        return int((self.descriptors - query).pow(2).sum(1).argmin())

    def generate(self, layout: torch.Tensor, seed: int = 0) -> torch.Tensor:
        image = self.images[self.nearest(layout)].float()
        if tuple(image.shape[-2:]) != tuple(layout.shape[-2:]):
            image = F.interpolate(
                image[None], tuple(layout.shape[-2:]), mode="bilinear", antialias=True, align_corners=False
            )[0].clamp(0, 1)
        return image


def matched_training_tiles(train_layouts, layouts, num_classes: int) -> list[int]:
    """For each layout, a distinct training tile, chosen so that the summed L1 distance between class shares is
    least (one-to-one assignment). These real tiles show what a model that drew the training distribution
    faithfully, for the same layouts, would score: the reach of the training data, not of any model."""
    from scipy.optimize import linear_sum_assignment

    if len(train_layouts) < len(layouts):
        raise ValueError(f"{len(train_layouts)} training tiles cannot match {len(layouts)} layouts one to one")

    wanted = torch.stack([class_shares(lay, num_classes) for lay in layouts]).double()
    available = torch.stack([class_shares(lay, num_classes) for lay in train_layouts]).double()
    cost = torch.cdist(wanted, available, p=1).numpy()
    rows, columns = linear_sum_assignment(cost)
    return [int(c) for _, c in sorted(zip(rows, columns))]


class Pix2PixBaseline:
    name = "pix2pix"

    def __init__(self, folder: str | Path):
        from ..models.pix2pix import load_pix2pix

        self.folder = Path(folder)
        self.generator = load_pix2pix(folder)

    def generate(self, layout: torch.Tensor, seed: int = 0) -> torch.Tensor:
        return self.generator.generate(layout)


class DownUpReference:
    """Not a generator: the real tile down-sampled to ``size`` px and back (antialiased bilinear both ways), the
    DESIGN.md reference points for what a low-resolution model can reach."""

    def __init__(self, size: int):
        self.size = size
        self.name = f"real {size}px down-up"

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        small = F.interpolate(
            image[None].float(), (self.size, self.size), mode="bilinear", antialias=True, align_corners=False
        )
        return F.interpolate(small, (height, width), mode="bilinear", antialias=False, align_corners=False)[0].clamp(
            0, 1
        )
