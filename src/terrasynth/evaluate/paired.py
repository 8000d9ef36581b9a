"""Paired metrics: a generated image against the real tile of the same layout (SSIM, PSNR, perceptual)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

PSNR_CAP_DB = 100.0


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.dim() == 3:
        a, b = a[None], b[None]
    if a.shape != b.shape:
        raise InputError(None, f"paired images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a.double(), b.double()


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of images in [0, 1]: an 11×11 Gaussian window (σ = 1.5),
    K₁ = 0.01, K₂ = 0.03, computed per channel over the valid region and averaged. B×3×H×W → B values."""
    a, b = _check_pair(a, b)
    channels = a.shape[1]
    window = min(window, a.shape[-1], a.shape[-2])
    g = _gaussian_window(window, sigma)
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window).contiguous()

    def blur(x):
        return F.conv2d(x, kernel, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean((1, 2, 3)).float()


def psnr(a: torch.Tensor, b: torch.Tensor, cap_db: float = PSNR_CAP_DB) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1], capped at ``cap_db`` (identical images score the
    cap instead of infinity, so means stay finite). B×3×H×W → B values."""
    a, b = _check_pair(a, b)
    mse = (a - b).pow(2).mean((1, 2, 3))
    values = [cap_db if m <= 10 ** (-cap_db / 10) else min(cap_db, -10 * math.log10(float(m))) for m in mse]
    return torch.tensor(values, dtype=torch.float32)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`psnr` of two uint8 H×W×3 arrays (a watermarked image against its host, say)."""
    return float(psnr(*(torch.tensor(np.asarray(x)).permute(2, 0, 1).double() / 255 for x in (a, b)))[0])


@torch.no_grad()
def paired_metrics(real: torch.Tensor, fake: torch.Tensor, perceptual_net=None, batch_size: int = 16) -> dict:
    """Mean ± std over pairs of SSIM, PSNR and (with an ``EffNetFeatures`` net) the perceptual distance on
    EfficientNet-Lite0 features (lower is closer)."""
    if len(real) != len(fake):
        raise InputError(None, f"paired metrics need as many generated as real images ({len(fake)} vs {len(real)})")
    if len(real) < 1:
        raise InputError(None, "paired metrics need at least 1 pair, got 0")
    values: dict[str, list[float]] = {"ssim": [], "psnr": [], "perceptual_effnet": []}
    for start in range(0, len(real), batch_size):
        r, f = real[start : start + batch_size].float(), fake[start : start + batch_size].float()
        values["ssim"] += ssim(r, f).tolist()
        values["psnr"] += psnr(r, f).tolist()
        if perceptual_net is not None:
            from ..models.features import perceptual_distance

            values["perceptual_effnet"] += perceptual_distance(perceptual_net, r, f).tolist()
    out: dict = {"n_pairs": len(real), "psnr_cap_db": PSNR_CAP_DB}
    for name, vals in values.items():
        if vals:
            array = np.asarray(vals)
            out[name] = {"mean": float(array.mean()), "std": float(array.std())}
    return out
