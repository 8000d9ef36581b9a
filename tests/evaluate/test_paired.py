import numpy as np
import pytest
import torch

from terrasynth.evaluate.paired import PSNR_CAP_DB, paired_metrics, psnr, psnr_uint8, ssim


def test_ssim_and_psnr_of_identical_images():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    assert torch.equal(psnr(x, x), torch.full((2,), PSNR_CAP_DB))


def test_ssim_and_psnr_drop_with_noise():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=generator)
    slight = (x + 0.02 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    heavy = (x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    assert ssim(x, slight) > ssim(x, heavy)
    assert psnr(x, slight) > psnr(x, heavy) > 0


def test_paired_metrics_summary():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = paired_metrics(x, x)
    assert out["n_pairs"] == 3 and out["ssim"]["mean"] > 0.999 and out["psnr"]["mean"] == PSNR_CAP_DB


def test_psnr_of_uint8_images_matches_the_formula():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert psnr_uint8(a, b) == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-4)  # float32 result
