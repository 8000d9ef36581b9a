"""Layout-consistency training: the clean-latent estimate, the latent segmenter, the loss and its use in a run."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file
from tests.train.test_resume import assert_same_tensors, datasets, diffusion_config, weights  # noqa: F401

from terrasynth.models.latent_segmenter import LatentSegmenter, soft_cross_entropy
from terrasynth.train import layout_consistency
from terrasynth.train.diffusion import train_diffusion
from terrasynth.train.layout_consistency import (
    SEGMENTER_FOLDER,
    consistency_loss,
    load_or_train_segmenter,
    predicted_clean,
    train_latent_segmenter,
)
from terrasynth.train.run import read_metrics


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon", "sample"])
def test_the_clean_estimate_of_a_perfect_prediction_is_the_clean_latent(prediction_type):
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    clean, noise = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    timesteps = torch.tensor([0, 250, 600, 999])
    noisy = scheduler.add_noise(clean, noise, timesteps)
    target = {
        "v_prediction": scheduler.get_velocity(clean, noise, timesteps),
        "epsilon": noise,
        "sample": clean,
    }[prediction_type]
    estimate = predicted_clean(noisy, target, timesteps, scheduler.alphas_cumprod, prediction_type)
    atol = 1e-3 if prediction_type != "epsilon" else 2e-2  # ε at t=999 divides by a small signal level
    torch.testing.assert_close(estimate, clean, atol=atol, rtol=1e-3)


def toy_latents(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1 in random 4×4 blocks, where channel 0 is raised: a segmenter must find it from the latent."""
    generator = torch.Generator().manual_seed(seed)
    blocks = (torch.rand(n, 2, 2, generator=generator) < 0.5).float()
    positive = blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)
    latents = torch.randn(n, 4, 8, 8, generator=generator)
    latents[:, 0] += 2 * (2 * positive - 1)
    return latents, torch.stack([1 - positive, positive], 1)


def test_the_latent_segmenter_learns_a_class_from_the_latent_and_reports_held_out_accuracy():
    latents, shares = toy_latents(40)
    _, untrained = train_latent_segmenter(latents, shares, steps=0, progress=False)
    segmenter, scores = train_latent_segmenter(latents, shares, steps=150, batch_size=8, progress=False)
    assert scores["held_out"] == 4
    assert scores["held_out_pixel_accuracy"] > 0.9 > untrained["held_out_pixel_accuracy"]
    assert not any(p.requires_grad for p in segmenter.parameters())


def test_the_segmenter_needs_two_tiles():
    latents, shares = toy_latents(1)
    with pytest.raises(ValueError, match="at least two tiles"):
        train_latent_segmenter(latents, shares, steps=1, progress=False)


def test_a_run_trains_its_segmenter_once_and_reuses_it(tmp_path, monkeypatch, caplog):
    latents, shares = toy_latents(10)
    layouts = torch.cat([shares, torch.ones_like(shares[:, :1])], 1)  # every tile has its layout
    first = load_or_train_segmenter(tmp_path, latents, layouts, 1.0, steps=2, seed=0, progress=False)
    assert (tmp_path / SEGMENTER_FOLDER / "training.json").is_file()
    assert not (tmp_path / f"{SEGMENTER_FOLDER}.partial").exists()

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(layout_consistency, "train_latent_segmenter", must_not_train)
    with caplog.at_level("WARNING"):
        again = load_or_train_segmenter(tmp_path, latents, layouts, 1.0, steps=2, seed=0, progress=False)
    assert_same_tensors(first.state_dict(), again.state_dict())
    assert not caplog.records
    # A config that now asks for other steps still gets the saved segmenter, and is told so.
    with caplog.at_level("WARNING"):
        changed = load_or_train_segmenter(tmp_path, latents, layouts, 1.0, steps=5, seed=0, progress=False)
    assert_same_tensors(first.state_dict(), changed.state_dict())
    assert "trained for 2 steps, the config now asks for 5" in caplog.text


def test_consistency_counts_only_samples_with_a_layout_at_low_noise():
    segmenter = LatentSegmenter(in_channels=4, num_classes=2).eval()
    estimate = torch.randn(3, 4, 8, 8, requires_grad=True)
    shares = torch.zeros(3, 2, 8, 8)
    shares[:, 0] = 1
    given = torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1, 1).expand(3, 1, 8, 8)
    layouts = torch.cat([shares * given, given], 1)  # the third sample's layout was dropped
    loss, count = consistency_loss(segmenter, estimate, layouts, torch.tensor([100, 700, 100]), max_timestep=400)
    assert count == 1  # the second is above the maximum timestep, the third has no layout
    expected = soft_cross_entropy(segmenter(estimate[:1]), shares[:1]).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert estimate.grad[0].abs().sum() > 0 and estimate.grad[1:].abs().sum() == 0

    none, count = consistency_loss(segmenter, estimate, layouts, torch.tensor([900, 900, 900]), max_timestep=400)
    assert count == 0 and none.item() == 0.0


def consistency_config(datasets, run, steps):  # noqa: F811
    return dataclasses.replace(
        diffusion_config(datasets, run, steps),
        layout_consistency_weight=0.5,
        layout_consistency_max_timestep=1000,  # every timestep counts, so four tiny steps see the loss
        latent_segmenter_steps=3,
    )


def test_a_run_with_the_consistency_loss_logs_it_and_resumes_exactly(datasets, tmp_path):  # noqa: F811
    straight = tmp_path / "straight"
    train_diffusion(consistency_config(datasets, straight, 4), progress=False)
    assert (straight / SEGMENTER_FOLDER / "config.json").is_file()
    records = read_metrics(straight)
    assert any("layout_consistency" in r for r in records)

    killed = tmp_path / "killed"
    train_diffusion(consistency_config(datasets, killed, 2), progress=False)
    train_diffusion(consistency_config(datasets, killed, 4), resume="latest", progress=False)
    for name in ("model", "ema"):
        assert_same_tensors(weights(killed / "checkpoint-4", name), weights(straight / "checkpoint-4", name))
    plain = tmp_path / "plain"
    train_diffusion(diffusion_config(datasets, plain, 4), progress=False)
    trained = load_file(straight / "checkpoint-4" / "model.safetensors")
    assert any(
        not torch.equal(trained[k], v) for k, v in load_file(plain / "checkpoint-4" / "model.safetensors").items()
    )


def test_the_consistency_options_are_checked(datasets):  # noqa: F811
    config = diffusion_config(datasets, "unused", 1)
    with pytest.raises(ValueError, match="non-negative"):
        dataclasses.replace(config, layout_consistency_weight=-1)
    with pytest.raises(ValueError, match="needs paired data"):
        dataclasses.replace(config, paired_roots=(), layout_consistency_weight=0.5)
    with pytest.raises(ValueError, match="max_timestep"):
        dataclasses.replace(config, layout_consistency_weight=0.5, layout_consistency_max_timestep=0)


def test_the_segmenter_is_seeded_and_leaves_the_global_random_state_alone():
    latents, shares = toy_latents(10)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, _ = train_latent_segmenter(latents, shares, steps=2, seed=5, progress=False)
    assert torch.equal(torch.rand(1), expected_next)
    second, _ = train_latent_segmenter(latents, shares, steps=2, seed=5, progress=False)
    assert_same_tensors(first.state_dict(), second.state_dict())
