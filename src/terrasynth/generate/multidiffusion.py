"""Layouts larger than the model's working size, sampled and decoded in overlapping windows.

MultiDiffusion (Bar-Tal et al. 2023, "MultiDiffusion: Fusing Diffusion Paths for Controlled Image Generation"):
at every denoising step the denoiser runs on each window of the scene's latents, with that window's slice of the
layout conditioning, and the windows' predictions are averaged where they overlap; the sampler then takes one
step on the whole scene. The average is weighted by a smooth window profile (a Hann window, 1 at the window's centre,
small but positive at its edges), so no window edge is a hard seam. The sampler's update is affine in the
prediction, with the same coefficients over the whole image, so fusing predictions is fusing the windows' paths
(the paper's closed-form step for a least-squares fusion with per-pixel weights), and one scene-sized noise draw
per seed keeps seeds and stochastic samplers as they are.

Decoding goes the same way: each window's latents are decoded (decoder, then its colour correction, exactly as a
working-size image is decoded) and the tiles are blended with the same profile at pixel scale. Memory is thus
bounded by one window (times the batch), plus the scene-sized latents and output image.

A scene at or below the working size is one window, and the pipeline takes its ordinary path, untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Share of a window shared with each neighbour: 1/4 of a 64-latent window is 16 latents (64 px at 4×).
DEFAULT_OVERLAP = 0.25
# Latent rows of the layout turned into class shares at a time: bounds the one-hot of a large layout.
LAYOUT_STRIP_ROWS = 64


def window_starts(length: int, window: int, overlap: float = DEFAULT_OVERLAP) -> list[int]:
    """Start offsets of windows of ``window`` cells covering ``length`` cells, neighbours sharing at least
    ``overlap`` of a window, spread evenly so the first starts at 0 and the last ends at ``length``."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if length <= window:
        return [0]
    stride = max(1, math.floor(window * (1 - overlap)))
    count = math.ceil((length - window) / stride) + 1
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def window_profile(size: int) -> torch.Tensor:
    """The 1-D window weight: a Hann (raised-cosine) window sampled at cell centres, ``sin²(π (i + ½) / size)``:
    1 at the centre, near 0 at the edges (where a convolution's zero padding disturbs the window's output) but
    positive, so a cell that only one window covers still has a weight."""
    return (torch.sin(math.pi * (torch.arange(size, dtype=torch.float64) + 0.5) / size) ** 2).float()


@dataclass(frozen=True)
class Windows:
    """Overlapping windows of ``window`` (rows, cols) over a grid of ``size`` (rows, cols) cells (latent
    pixels); ``corners`` are their top-left cells. ``scale`` in the methods maps the grid to pixels."""

    size: tuple[int, int]
    window: tuple[int, int]
    corners: tuple[tuple[int, int], ...]

    @classmethod
    def cover(cls, size: tuple[int, int], window: int, overlap: float = DEFAULT_OVERLAP) -> Windows:
        height, width = size
        window_h, window_w = min(window, height), min(window, width)
        rows, cols = window_starts(height, window_h, overlap), window_starts(width, window_w, overlap)
        return cls((height, width), (window_h, window_w), tuple((y, x) for y in rows for x in cols))

    def __len__(self) -> int:
        return len(self.corners)

    def box(self, corner: tuple[int, int], scale: int = 1) -> tuple[slice, slice]:
        y, x = corner
        return slice(y * scale, (y + self.window[0]) * scale), slice(x * scale, (x + self.window[1]) * scale)

    def weight(self, scale: int = 1) -> torch.Tensor:
        """One window's weight (rows × cols at ``scale``), the outer product of two :func:`window_profile`."""
        return window_profile(self.window[0] * scale)[:, None] * window_profile(self.window[1] * scale)[None, :]

    def total(self, scale: int = 1) -> torch.Tensor:
        """The windows' weights summed over the grid at ``scale``: what a fused value is divided by."""
        total = torch.zeros(self.size[0] * scale, self.size[1] * scale)
        weight = self.weight(scale)
        for corner in self.corners:
            total[self.box(corner, scale)] += weight
        return total

    def fuse(self, compute: Callable[[tuple[slice, slice]], torch.Tensor], like: torch.Tensor, scale: int = 1):
        """``Σ_i w_i · compute(box_i) / Σ_i w_i``: the weighted average of ``compute`` run on each window's box
        (``...×rows×cols`` at ``scale``), into a tensor shaped like ``like`` with the scene's rows × cols."""
        shape = (*like.shape[:-2], self.size[0] * scale, self.size[1] * scale)
        fused = torch.zeros(shape, dtype=like.dtype, device=like.device)
        weight = self.weight(scale).to(like.device, like.dtype)
        for corner in self.corners:
            box = self.box(corner, scale)
            fused[..., box[0], box[1]] += compute(self.box(corner)) * weight
        return fused / self.total(scale).to(like.device, like.dtype)


def crop(tensor: torch.Tensor | None, box: tuple[slice, slice]) -> torch.Tensor | None:
    """``tensor[..., rows, cols]``; None stays None."""
    return None if tensor is None else tensor[..., box[0], box[1]]


def predict_in_windows(windows: Windows, predict, model_input, layout_channels, null_layout, *conditions):
    """``predict(model_input, layout_channels, null_layout, *conditions)`` run on each window's crop of the three
    (B×C×h×w latents and layout channels; None stays None) and fused: one MultiDiffusion step's prediction."""

    def window(box):
        return predict(crop(model_input, box), crop(layout_channels, box), crop(null_layout, box), *conditions)

    return windows.fuse(window, model_input)


def scene_windows(config, latent_size: tuple[int, int], overlap: float = DEFAULT_OVERLAP) -> Windows | None:
    """The windows a scene of ``latent_size`` latents is sampled in, or None when it fits the model's working
    size (``config.sample_size`` pixels a side) and is sampled whole."""
    window = config.sample_size // config.downsampling
    if max(latent_size) <= window:
        return None
    return Windows.cover(latent_size, window, overlap)


def layout_channels_in_strips(model, layout: torch.Tensor, batch_size: int, latent_size: tuple[int, int]):
    """``model.layout_channels`` of a large layout (B×H×W, H and W ``downsampling`` times the latent size),
    made ``LAYOUT_STRIP_ROWS`` latent rows at a time: the class shares of a latent pixel are its own
    ``downsampling``² pixels' average either way, without the scene-sized one-hot."""
    down = model.config.downsampling
    strips = []
    for row in range(0, latent_size[0], LAYOUT_STRIP_ROWS):
        rows = min(LAYOUT_STRIP_ROWS, latent_size[0] - row)
        strip = layout[:, row * down : (row + rows) * down]
        strips.append(model.layout_channels(strip, batch_size, (rows, latent_size[1])))
    return torch.cat(strips, dim=2)


def decode_in_windows(model, latents: torch.Tensor, windows: Windows) -> torch.Tensor:
    """Scaled latents → [0, 1] images, decoded window by window with ``model.decode_latents`` (decoder and colour
    correction, as for a working-size image) and blended with the windows' weights at pixel scale."""
    down = model.config.downsampling
    images = windows.fuse(lambda box: model.decode_latents(latents[..., box[0], box[1]]), latents[:, :3], down)
    return images.clamp(0, 1)  # a weighted average of values in [0, 1], but for rounding


__all__ = [
    "DEFAULT_OVERLAP",
    "Windows",
    "crop",
    "decode_in_windows",
    "layout_channels_in_strips",
    "predict_in_windows",
    "scene_windows",
    "window_profile",
    "window_starts",
]
