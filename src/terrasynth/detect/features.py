"""Forensic features of native-resolution tiles, for detectors that must generalise to generators never seen.

Four kinds of evidence, all computed on the tile as it is (no resampling, which would erase the traces):

* **frozen ImageNet features at several depths** (UnivFD, Ojha et al., CVPR 2023: a linear probe on frozen features
  generalises across generators better than a fine-tuned network). EfficientNet-Lite0 is the offline backbone here;
  the channel means of blocks from stride 2 to 32 keep low-level texture statistics beside semantic ones.
* **high-pass residual statistics**, the traces of up-sampling and re-sampling that every decoder and GAN leaves
  (Durall et al., CVPR 2020; NPR, Tan et al., CVPR 2024): the residual's azimuthal power spectrum, the energy of
  first differences at each phase of periods 2, 4 and 8 (up-sampling and block grids), and how far the residual's
  2-D spectrum peaks at the frequencies of a period-2, -4 or -8 grid above its neighbourhood (Zhang et al., WIFS
  2019; Corvi et al., ICASSP 2023), all read on luma.
* **natural-scene statistics** (BRISQUE, Mittal et al., IEEE TIP 2012): the distribution of contrast-normalised
  luma and of the products of neighbouring coefficients, at two scales. They describe how any photograph's local
  structure behaves, not one generator's, and they survive down-scaling better than up-sampling traces do: in
  benchmarks/detection.py, read by the probe detector's forensic probe, they raised the held-out colour-fill
  family's AUC from 0.79 to 0.997 (earlier sets; now 1.000) and every held-out family's AUC after resize ×0.5.
* **colour statistics at a coarse scale**: how strong colour-difference texture is against luma texture, and how
  the channels' residuals correlate, read on the tile low-passed to periods of about 10–20 px. Independent noise
  per channel (a naive generator) or a decoder's colour drift show there.

No feature reads colour at full resolution. Whether an image's colour planes were stored at full or half
resolution (JPEG 4:4:4 or 4:2:0, lossless GeoTIFF or a web JPEG) is a choice of whoever stored it, not a trace of
what made it. With full-resolution chroma statistics, a detector trained on one real source stored as 4:2:0
learnt "fine colour detail = synthetic" and called 25 % of LandCover.ai's genuine 4:4:4 tiles synthetic. So the
residual and natural-scene statistics read luma alone, the backbone sees the tile with its chroma low-passed
(``canonical_chroma``), and the colour statistics read a band that 4:4:4 and 4:2:0 copies of an image share.

Tiles are uint8 ``size×size×3`` arrays; ``tile_features`` returns one row per tile.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy import ndimage
from scipy.special import gamma

from ..data.images import luma as to_luma

# Blocks of EfficientNet-Lite0 whose channel means are kept, and their channel counts
PROBE_BLOCKS = (2, 4, 7, 10, 14, 15)
BLOCK_WIDTHS = (24, 40, 80, 112, 192, 320)
DEEP_WIDTH = sum(BLOCK_WIDTHS)  # 768
SPECTRUM_BINS = 16
PERIODS = (2, 4, 8)  # up-sampling by 2 and 4, and the JPEG block grid
PEAK_WIDTH = 2 * len(PERIODS)
RESIDUAL_WIDTH = 16 + 1 + 2 * sum(PERIODS) + PEAK_WIDTH
NATURAL_WIDTH = 2 * 18
COLOUR_WIDTH = 2 + 3
FEATURE_WIDTH = DEEP_WIDTH + RESIDUAL_WIDTH + NATURAL_WIDTH + COLOUR_WIDTH
# raised whenever the features of a tile or the choice of tiles change, so cached features are not reused
FEATURES_VERSION = 6
# Gaussian low-pass of the colour-difference planes, in pixels: it leaves about 6 % of the amplitude at a
# quarter of the sampling rate, the highest frequency 4:2:0 chroma keeps, so 4:4:4 and 4:2:0 copies look alike
CHROMA_SIGMA = 1.5
# the low-pass before the colour statistics: on 60 LandCover.ai tiles stored 4:4:4 and re-stored 4:2:0, the five
# statistics move by at most 0.13 of their spread between tiles, at full resolution by up to 3.8
# (benchmarks/chroma_invariance.py)
COLOUR_SIGMA = 3.0


@functools.lru_cache(maxsize=1)
def _backbone():
    from ..models.features import EffNetFeatures

    return EffNetFeatures(pretrained=True)


@torch.no_grad()
def deep_features(tiles: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Channel means of the ``PROBE_BLOCKS`` outputs for N×H×W×3 uint8 tiles: N × 768."""
    model = _backbone()
    out = []
    for start in range(0, len(tiles), batch_size):
        batch = torch.from_numpy(tiles[start : start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
        maps = model.endpoints(batch, PROBE_BLOCKS)
        out.append(torch.cat([m.mean((2, 3)) for m in maps], 1).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, DEEP_WIDTH), np.float32)


def _box3(x: np.ndarray) -> np.ndarray:
    """3×3 mean over the last two axes, edges replicated."""
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = x.shape[-2:]
    total = sum(padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3))
    return total / 9.0


@functools.lru_cache(maxsize=4)
def _rings(size: int, bins: int):
    freq = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.sqrt(fx**2 + fy**2) / 0.5
    index = np.minimum((radius * bins).astype(int), bins - 1).ravel()
    counts = np.bincount(index, minlength=bins)
    return index, counts, np.outer(np.hanning(size), np.hanning(size))


def canonical_chroma(tiles: np.ndarray) -> np.ndarray:
    """N×S×S×3 tiles with luma kept and the colour-difference planes low-passed (σ ``CHROMA_SIGMA``), as float32
    in 0–255: copies of an image stored with full- or half-resolution chroma give nearly the same array."""
    x = tiles.astype(np.float32)
    y = to_luma(x)
    blur = functools.partial(ndimage.gaussian_filter, sigma=(0, CHROMA_SIGMA, CHROMA_SIGMA), mode="reflect")
    red, blue = y + blur(x[..., 0] - y), y + blur(x[..., 2] - y)
    green = (y - 0.299 * red - 0.114 * blue) / 0.587
    return np.clip(np.stack([red, green, blue], -1), 0, 255).astype(np.float32)


def residual_features(tiles: np.ndarray) -> np.ndarray:
    """Luma residual statistics of N×S×S×3 uint8 tiles: N × ``RESIDUAL_WIDTH`` (51): the residual's spectrum (16)
    and energy (1), the phase energies of first differences at periods 2, 4, 8 across and down (28), and the
    spectrum's peaks on the grids of those periods (6)."""
    luma = to_luma(tiles)
    r_luma = luma - _box3(luma)
    size = luma.shape[-1]
    eps = 1e-3
    index, counts, window = _rings(size, SPECTRUM_BINS)
    power = np.abs(np.fft.fft2(r_luma * window)) ** 2
    rings = np.stack([np.bincount(index, weights=p.ravel(), minlength=SPECTRUM_BINS) for p in power]) / counts
    log_rings = np.log(rings + eps)
    total = np.log(np.mean(r_luma**2, axis=(1, 2)) + eps)
    spectrum = log_rings - log_rings.mean(1, keepdims=True)
    # energy of the first differences across each column (down each row) phase of a period, sorted: the phase of
    # a tile on an up-sampling or block grid is unknown, its inequality is the trace
    across = np.diff(luma, axis=2) ** 2
    down = np.diff(luma, axis=1) ** 2
    scale = (across.mean((1, 2)) + down.mean((1, 2)))[:, None] / 2 + eps
    phases = []
    for period in PERIODS:
        for energy, axis in ((across, 2), (down, 1)):
            if axis == 2:
                columns = [energy[:, :, j::period].mean((1, 2)) for j in range(period)]
            else:
                columns = [energy[:, j::period, :].mean((1, 2)) for j in range(period)]
            phases.append(np.sort(np.log((np.stack(columns, 1) + eps) / scale), 1))
    return np.concatenate([spectrum, total[:, None], *phases, grid_peaks(power)], 1).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _grid_frequencies(size: int):
    """For each period, the 2-D frequency bins of a grid of that period that no shorter period has, and for each
    bin its neighbours 2 and 3 bins away along its row and column."""
    out, seen, offsets = [], {(0, 0)}, (-3, -2, 2, 3)
    for period in PERIODS:
        steps = sorted({round(k * size / period) % size for k in range(period)})
        bins = [(y, x) for y in steps for x in steps if (y, x) not in seen]
        seen.update(bins)
        around = [[((y + d) % size, x) for d in offsets] + [(y, (x + d) % size) for d in offsets] for y, x in bins]
        out.append((np.array(bins), np.array(around)))
    return out


def grid_peaks(power: np.ndarray) -> np.ndarray:
    """Mean and largest log-height of the 2-D power spectrum's peaks on each period's grid frequencies above the
    median of their neighbourhood (N × S × S → N × ``PEAK_WIDTH``). Learnt up-sampling by 2 or 4 (a transposed
    convolution's checkerboard) and a JPEG block grid often leave such peaks; plain nearest-neighbour up-sampling
    does not (its filter is zero there). Their height does not depend on the grid's phase, and a ×4 grid read after
    halving the image is a ×2 one."""
    log_power = np.log(power + 1e-3)
    out = []
    for bins, around in _grid_frequencies(power.shape[-1]):
        peak = log_power[:, bins[:, 0], bins[:, 1]]
        floor = np.median(log_power[:, around[..., 0], around[..., 1]], axis=2)
        height = peak - floor
        out += [height.mean(1), height.max(1)]
    return np.stack(out, 1)


def colour_features(tiles: np.ndarray, sigma: float = COLOUR_SIGMA) -> np.ndarray:
    """Coarse colour statistics of N×S×S×3 uint8 tiles: N × ``COLOUR_WIDTH`` (5). On the tile low-passed by
    ``sigma`` px: the high-pass energy of the blue and red colour differences against that of luma (2), and the
    correlation of the three channels' high-pass residuals (3). ``sigma`` 0 gives the full-resolution statistics
    an earlier version read."""
    x = ndimage.gaussian_filter(tiles.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="reflect")
    luma = to_luma(x)
    x = x.transpose(0, 3, 1, 2)
    residual = x - _box3(x)
    r_luma = luma - _box3(luma)
    eps = 1e-3
    luma_energy = np.log((r_luma**2).mean((1, 2)) + eps)
    chroma = [np.log(((residual[:, c] - r_luma) ** 2).mean((1, 2)) + eps) - luma_energy for c in (2, 0)]
    flat = residual.reshape(len(x), 3, -1)
    flat = flat - flat.mean(2, keepdims=True)
    norm = np.sqrt((flat**2).sum(2)) + eps
    corr = [(flat[:, a] * flat[:, b]).sum(1) / (norm[:, a] * norm[:, b]) for a, b in ((0, 1), (1, 2), (0, 2))]
    return np.stack(chroma + corr, 1).astype(np.float32)


_SHAPES = np.arange(0.2, 10.0, 0.001)
# moment ratios of the generalised Gaussian as functions of its shape: E[x²] / E[|x|]² (falling) and its inverse
_GGD_RATIO = gamma(1 / _SHAPES) * gamma(3 / _SHAPES) / gamma(2 / _SHAPES) ** 2
_AGGD_RATIO = 1 / _GGD_RATIO


def ggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape and variance of a zero-mean generalised Gaussian fitted to each row of ``x`` by moment matching
    (Sharifi and Leon-Garcia 1995; shape 1 is Laplacian, 2 Gaussian)."""
    variance = (x**2).mean(1)
    ratio = variance / (np.abs(x).mean(1) ** 2 + 1e-12)
    return np.interp(ratio, _GGD_RATIO[::-1], _SHAPES[::-1]), variance


def aggd_fit(x: np.ndarray) -> np.ndarray:
    """Shape, mean, left and right variance of an asymmetric generalised Gaussian fitted to each row of ``x``
    (Lasmar et al. 2009), N × 4."""
    negative, positive = x < 0, x > 0
    left = np.sqrt((x**2 * negative).sum(1) / np.maximum(negative.sum(1), 1))
    right = np.sqrt((x**2 * positive).sum(1) / np.maximum(positive.sum(1), 1))
    g = left / (right + 1e-12)
    r = np.abs(x).mean(1) ** 2 / ((x**2).mean(1) + 1e-12)
    ratio = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    shape = np.interp(ratio, _AGGD_RATIO, _SHAPES)
    mean = (right - left) * gamma(2 / shape) / gamma(1 / shape) * np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    return np.stack([shape, mean, left**2, right**2], 1)


def mscn(luma: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients of N×H×W luma in 0–255 (7×7 Gaussian window, σ 7/6)."""
    blur = functools.partial(ndimage.gaussian_filter, sigma=(0, 7 / 6, 7 / 6), truncate=3 / (7 / 6), mode="nearest")
    mu = blur(luma)
    sigma = np.sqrt(np.abs(blur(luma * luma) - mu * mu))
    return (luma - mu) / (sigma + 1.0)


def naturalness_features(tiles: np.ndarray) -> np.ndarray:
    """Natural-scene statistics of N×S×S×3 uint8 tiles (BRISQUE, Mittal et al. 2012), N × ``NATURAL_WIDTH`` (36).

    Contrast-normalised luma of photographs has a characteristic, nearly Gaussian distribution and neighbouring
    coefficients that are correlated in a characteristic way, at any scale; additive noise, smoothing, flat fills
    and many generators' textures depart from both. Per scale (the tile and its 2× mean-pooled copy): the
    coefficients' shape and variance, and the shape, mean, left and right variance of the products of horizontal,
    vertical and both diagonal neighbours. Variances are given as logarithms."""
    luma = to_luma(tiles, np.float64)
    out = []
    for _ in range(2):
        m = mscn(luma)
        n = len(m)
        shape, variance = ggd_fit(m.reshape(n, -1))
        out += [shape, np.log(variance + 1e-6)]
        for product in (
            m[:, :, :-1] * m[:, :, 1:],
            m[:, :-1] * m[:, 1:],
            m[:, :-1, :-1] * m[:, 1:, 1:],
            m[:, 1:, :-1] * m[:, :-1, 1:],
        ):
            fit = aggd_fit(product.reshape(n, -1))
            out += [fit[:, 0], fit[:, 1], np.log(fit[:, 2] + 1e-6), np.log(fit[:, 3] + 1e-6)]
        h, w = luma.shape[1] // 2 * 2, luma.shape[2] // 2 * 2
        luma = luma[:, :h, :w].reshape(n, h // 2, 2, w // 2, 2).mean((2, 4))
    return np.stack(out, 1).astype(np.float32)


def tile_features(tiles: np.ndarray) -> np.ndarray:
    """Deep (on ``canonical_chroma`` tiles), residual, natural-scene and colour features of N×S×S×3 uint8 tiles,
    side by side: N × ``FEATURE_WIDTH`` (860)."""
    tiles = np.ascontiguousarray(tiles)
    if len(tiles) == 0:
        return np.zeros((0, FEATURE_WIDTH), np.float32)
    deep = deep_features(canonical_chroma(tiles))
    return np.concatenate([deep, residual_features(tiles), naturalness_features(tiles), colour_features(tiles)], 1)


def grid_tiles(image: np.ndarray, size: int) -> np.ndarray:
    """Every ``size`` tile of an H×W×3 image on a grid, the last row and column flush with the edge."""
    return np.stack([image[r : r + size, c : c + size] for r, c in tile_grid(*image.shape[:2], size, size)])


def tile_grid(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of ``size`` tiles every ``stride`` pixels, the last row and column flush with the edge."""

    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        points = list(range(0, n - size + 1, stride))
        return points if points[-1] == n - size else points + [n - size]

    return [(r, c) for r in starts(height) for c in starts(width)]
