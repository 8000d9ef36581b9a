"""Diffusion training options: SNR loss weightings, random latent crops, starting from a model folder."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from tests.fake_models import SCENE_CLASSES, TINY_DENOISER, save_tiny_model, tiny_model_config
from tests.train.test_resume import datasets, diffusion_config  # noqa: F401  (datasets: a module fixture)

from terrasynth.config import config_from_dict, config_to_dict
from terrasynth.errors import InputError
from terrasynth.models.embedded import EmbeddedDiffusionModel, load_autoencoder
from terrasynth.models.mean_prior import MeanPriorConfig
from terrasynth.train.diffusion import (
    DiffusionTrainConfig,
    _random_crop,
    _snr_weight,
    layout_loss_weight_map,
    train_diffusion,
)
from terrasynth.train.run import learning_rate_at, read_metrics


def weight(snr: list[float], weighting: str, prediction_type: str = "v_prediction", gamma: float = 5.0):
    config = type("C", (), {"snr_weighting": weighting, "min_snr_gamma": gamma})()
    return _snr_weight(torch.tensor(snr), config, prediction_type)


def test_min_snr_fades_to_zero_at_pure_noise_but_min_snr_plus_one_keeps_plain_v_loss():
    assert float(weight([0.0], "min-snr")[0]) == 0.0
    assert float(weight([0.0], "min-snr+1")[0]) == 1.0
    # High SNR: both cap the x0 weight at gamma, i.e. v weight gamma / (snr + 1).
    for weighting in ("min-snr", "min-snr+1"):
        assert float(weight([99.0], weighting)[0]) == pytest.approx(5.0 / 100.0)
    assert torch.equal(weight([0.0, 3.0, 50.0], "none"), torch.ones(3))


def test_epsilon_weight_is_the_x0_weight_over_snr():
    assert float(weight([2.0], "min-snr", "epsilon")[0]) == pytest.approx(1.0)
    assert float(weight([10.0], "min-snr", "epsilon")[0]) == pytest.approx(0.5)


def test_random_crop_takes_the_same_window_from_latent_and_layout():
    latents = torch.arange(2 * 16 * 16, dtype=torch.float).view(2, 1, 16, 16).expand(2, 3, 16, 16)
    layouts = latents[:, :1] * 10
    cropped_latents, cropped_layouts = _random_crop(latents, layouts, 8, torch.Generator().manual_seed(0))
    assert cropped_latents.shape == (2, 3, 8, 8) and cropped_layouts.shape == (2, 1, 8, 8)
    assert torch.equal(cropped_layouts, cropped_latents[:, :1] * 10)


def test_crop_must_fit_the_model(datasets):  # noqa: F811
    config = diffusion_config(datasets, "unused", 1)
    with pytest.raises(ValueError, match="crop must be a multiple"):
        dataclasses.replace(config, crop=6)
    with pytest.raises(ValueError, match="snr_weighting"):
        dataclasses.replace(config, snr_weighting="max-snr")
    # A mean prior is fitted at export, from data; a training config cannot name one it has no table for.
    with pytest.raises(ValueError, match="fitted at export"):
        dataclasses.replace(config, model=dataclasses.replace(config.model, mean_prior=MeanPriorConfig()))


def test_learning_rate_warms_up_holds_then_decays_linearly_to_zero():
    rates = [learning_rate_at(step, 1.0, warmup_steps=2, max_steps=10, decay_steps=4) for step in range(10)]
    assert rates == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25])
    assert learning_rate_at(9, 1.0, 2, 10) == 1.0  # no decay by default


def test_lr_decay_is_applied_in_training_and_checked(datasets, tmp_path):  # noqa: F811
    config = dataclasses.replace(
        diffusion_config(datasets, tmp_path / "run", 4), log_every=1, warmup_steps=1, lr_decay_steps=2
    )
    train_diffusion(config, progress=False)
    base = config.learning_rate
    assert [r["lr"] for r in read_metrics(tmp_path / "run")] == pytest.approx([base, base, base, base / 2])
    with pytest.raises(ValueError, match="lr_decay_steps"):
        dataclasses.replace(config, lr_decay_steps=5)


def test_zero_snr_needs_a_prediction_type_other_than_epsilon():
    with pytest.raises(ValueError, match="zero terminal SNR"):
        tiny_model_config(rescale_betas_zero_snr=True, prediction_type="epsilon")


def test_training_on_crops_from_a_model_folder_onto_a_zero_snr_schedule(datasets, tmp_path):  # noqa: F811
    """init_from gives the weights; the training config gives the schedule; crops train the same model."""
    class_model = dict(conditioning="class", scene_classes=SCENE_CLASSES)
    start = save_tiny_model(tmp_path / "start", seed=3, **class_model)
    config = dataclasses.replace(
        diffusion_config(datasets, tmp_path / "run", 2),
        model=tiny_model_config(rescale_betas_zero_snr=True, **class_model),
        init_from=str(start),
        autoencoder_path=None,
        crop=16,
        snr_weighting="min-snr+1",
    )
    out = train_diffusion(config, progress=False)
    trained = EmbeddedDiffusionModel.from_pretrained(out)
    assert trained.config.rescale_betas_zero_snr
    assert float(trained.config.noise_scheduler().alphas_cumprod[-1]) == 0.0
    started = EmbeddedDiffusionModel.from_pretrained(start)
    assert torch.equal(trained.vae.decoder.conv_out.weight, started.vae.decoder.conv_out.weight)
    assert not torch.equal(trained.unet.conv_in.weight, started.unet.conv_in.weight)  # it trained


def test_an_autoencoder_path_beside_init_from_moves_the_denoiser_into_its_latent_space(datasets, tmp_path):  # noqa: F811
    _, _, autoencoder = datasets
    class_model = dict(conditioning="class", scene_classes=SCENE_CLASSES)
    start = save_tiny_model(tmp_path / "start", seed=3, **class_model)
    config = dataclasses.replace(diffusion_config(datasets, tmp_path / "run", 1), init_from=str(start))
    trained = EmbeddedDiffusionModel.from_pretrained(train_diffusion(config, progress=False))
    trained_decoder = trained.vae.decoder.conv_out.weight
    assert torch.equal(trained_decoder, load_autoencoder(autoencoder).decoder.conv_out.weight)
    assert not torch.equal(trained_decoder, EmbeddedDiffusionModel.from_pretrained(start).vae.decoder.conv_out.weight)
    # The denoiser starts from init_from's weights (one step moves it only a little).
    started_unet = EmbeddedDiffusionModel.from_pretrained(start).unet.conv_in.weight
    assert (trained.unet.conv_in.weight - started_unet).abs().max() < 0.05


def test_init_from_a_model_of_another_architecture_is_refused(datasets, tmp_path):  # noqa: F811
    other = save_tiny_model(
        tmp_path / "other",
        denoiser=dataclasses.replace(TINY_DENOISER, block_out_channels=(8, 16)),
        conditioning="class",
        scene_classes=SCENE_CLASSES,
    )
    config = dataclasses.replace(diffusion_config(datasets, tmp_path / "run", 1), init_from=str(other))
    with pytest.raises(InputError, match="architecture differs"):
        train_diffusion(config, progress=False)


def test_posterior_mode_trains_on_the_cached_means_alone(datasets, tmp_path):  # noqa: F811
    from safetensors.torch import load_file, save_file

    config = dataclasses.replace(diffusion_config(datasets, tmp_path / "mode", 1), posterior="mode")
    with pytest.raises(ValueError, match="posterior must be one of"):
        dataclasses.replace(config, posterior="mean")
    train_diffusion(config, progress=False)
    trained = load_file(tmp_path / "mode" / "checkpoint-1" / "model.safetensors")
    # The same run with the cached posterior stds scaled by 10 learns the same weights: only the means are used.
    (tmp_path / "wide").mkdir()
    cache = load_file(tmp_path / "mode" / "latent-cache.safetensors")
    save_file({**cache, "std": cache["std"] * 10}, tmp_path / "wide" / "latent-cache.safetensors")
    shutil.copy(tmp_path / "mode" / "latent-cache.json", tmp_path / "wide" / "latent-cache.json")
    train_diffusion(dataclasses.replace(config, output_dir=str(tmp_path / "wide")), progress=False)
    wide = load_file(tmp_path / "wide" / "checkpoint-1" / "model.safetensors")
    assert all(torch.equal(trained[k], wide[k]) for k in trained)
    # Posterior samples train other weights.
    train_diffusion(
        dataclasses.replace(config, output_dir=str(tmp_path / "sample"), posterior="sample"), progress=False
    )
    sampled = load_file(tmp_path / "sample" / "checkpoint-1" / "model.safetensors")
    assert any(not torch.equal(trained[k], sampled[k]) for k in trained)


def test_layout_loss_weights_follow_the_class_shares_and_are_one_without_a_layout():
    layouts = torch.zeros(2, 6, 2, 2)
    layouts[0, 0] = 1.0  # all background
    layouts[0, 4, 0, 0], layouts[0, 0, 0, 0] = 0.5, 0.5  # one pixel half road
    layouts[0, 5] = 1.0  # layout given; sample 1 has none (all zeros)
    weights = layout_loss_weight_map(layouts, (1.0, 1.0, 2.0, 1.0, 5.0))
    assert weights.shape == (2, 1, 2, 2)
    assert weights[0, 0, 0, 0] == pytest.approx(3.0)  # 0.5 · 1 + 0.5 · 5
    assert torch.equal(weights[0, 0].flatten()[1:], torch.ones(3))
    assert torch.equal(weights[1], torch.ones(1, 2, 2))


def test_layout_class_loss_weights_are_checked_and_survive_json(datasets, tmp_path):  # noqa: F811
    config = diffusion_config(datasets, tmp_path / "run", 1)
    with pytest.raises(ValueError, match="one weight per layout class"):
        dataclasses.replace(config, layout_class_loss_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="must be positive"):
        dataclasses.replace(config, layout_class_loss_weights=(1.0, 1.0, 1.0, 0.0, 4.0))
    weighted = dataclasses.replace(config, layout_class_loss_weights=(1.0, 1.0, 1.0, 1.0, 4.0))
    assert config_from_dict(DiffusionTrainConfig, config_to_dict(weighted)) == weighted


def test_layout_class_loss_weights_change_training_and_all_ones_do_not(datasets, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    # Paired tiles only, so that every sample of a step has a layout to weigh by.
    config = dataclasses.replace(diffusion_config(datasets, tmp_path / "plain", 1), scene_roots=(), drop_layout=0.0)
    trained = {}
    for name, class_weights in [("plain", None), ("ones", (1.0,) * 5), ("weighted", (1.0, 3.0, 0.2, 5.0, 20.0))]:
        run = dataclasses.replace(config, output_dir=str(tmp_path / name), layout_class_loss_weights=class_weights)
        train_diffusion(run, progress=False)
        trained[name] = load_file(tmp_path / name / "checkpoint-1" / "model.safetensors")
    assert all(torch.equal(trained["plain"][k], trained["ones"][k]) for k in trained["plain"])
    assert any(not torch.equal(trained["plain"][k], trained["weighted"][k]) for k in trained["plain"])
