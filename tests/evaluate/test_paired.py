import torch

from terrasynth.evaluate.paired import PSNR_CAP_DB, paired_metrics, psnr, ssim


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
