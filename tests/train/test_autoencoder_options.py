"""Refining the decoder of a trained autoencoder without moving its latent space, and shipping it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import AutoencoderKL
from tests.fake_models import SCENE_CLASSES, save_tiny_model
from tests.train.test_resume import autoencoder_config, datasets, diffusion_config  # noqa: F401

from terrasynth.errors import InputError
from terrasynth.models.embedded import EmbeddedDiffusionModel, load_autoencoder, load_autoencoder_and_correction
from terrasynth.train.autoencoder import train_autoencoder
from terrasynth.train.checkpoints import list_checkpoints
from terrasynth.train.diffusion import train_diffusion
from terrasynth.train.export import export_checkpoint


def parts(vae) -> tuple[dict, dict]:
    state = vae.state_dict()
    frozen = {k: v for k, v in state.items() if k.startswith(("encoder.", "quant_conv."))}
    return frozen, {k: v for k, v in state.items() if k not in frozen}


def decoder_refinement(datasets, output_dir, max_steps: int, **changes):  # noqa: F811
    """A decoder-only refinement of the fixture's trained autoencoder (encoder frozen)."""
    _, _, autoencoder = datasets
    config = autoencoder_config(datasets, output_dir, max_steps)
    return dataclasses.replace(config, init_from=str(autoencoder), train_encoder=False, **changes)


def test_decoder_only_keeps_encoder_and_scaling_factor_and_changes_the_decoder(datasets, tmp_path):  # noqa: F811
    model_dir = save_tiny_model(tmp_path / "model", conditioning="class", scene_classes=SCENE_CLASSES)
    start = EmbeddedDiffusionModel.from_pretrained(model_dir).vae
    config = dataclasses.replace(
        autoencoder_config(datasets, tmp_path / "refine", 3),
        init_from=str(model_dir),
        train_encoder=False,
        color_weight=1.0,
        adversarial_start=0,
    )
    refined = AutoencoderKL.from_pretrained(train_autoencoder(config, progress=False))
    (encoder_before, decoder_before), (encoder_after, decoder_after) = parts(start), parts(refined)
    assert all(torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_before)
    assert any(not torch.equal(decoder_before[k], decoder_after[k]) for k in decoder_before)
    assert refined.config.scaling_factor == start.config.scaling_factor


def test_decoder_only_needs_a_trained_autoencoder(datasets, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="needs init_from"):
        dataclasses.replace(autoencoder_config(datasets, tmp_path, 1), train_encoder=False)
    config = dataclasses.replace(autoencoder_config(datasets, tmp_path / "run", 1), init_from=str(tmp_path))
    with pytest.raises(InputError, match="no autoencoder weights"):
        train_autoencoder(config, progress=False)


def test_export_swaps_in_a_refined_decoder_but_refuses_a_different_encoder(datasets, tmp_path):  # noqa: F811
    pairs, scenes, autoencoder = datasets
    diffusion = diffusion_config(datasets, tmp_path / "diffusion", 1)
    train_diffusion(diffusion, progress=False)
    checkpoint = list_checkpoints(tmp_path / "diffusion")[-1]
    refine = dataclasses.replace(
        autoencoder_config(datasets, tmp_path / "refine", 2),
        init_from=str(autoencoder),
        train_encoder=False,
        colour_correction_size=32,
    )
    refined_dir = train_autoencoder(refine, progress=False)
    shipped = export_checkpoint(diffusion, checkpoint, tmp_path / "shipped", vae_path=str(refined_dir))
    shipped_model = EmbeddedDiffusionModel.from_pretrained(shipped)
    shipped_vae, shipped_correction = shipped_model.vae, shipped_model.colour_correction
    assert torch.equal(
        shipped_vae.decoder.conv_out.weight, AutoencoderKL.from_pretrained(refined_dir).decoder.conv_out.weight
    )
    # The decoder's colour correction travels with it.
    assert shipped_correction.matrix.shape == (3, 5)
    assert torch.equal(shipped_correction.matrix, load_autoencoder_and_correction(refined_dir)[1].matrix)
    # Refining that decoder again without a fit drops its correction, which belonged to the old decoder.
    again = dataclasses.replace(
        refine, init_from=str(refined_dir), colour_correction_size=0, output_dir=str(tmp_path / "again")
    )
    assert load_autoencoder_and_correction(train_autoencoder(again, progress=False))[1] is None
    with pytest.raises(ValueError, match="colour_correction_size"):
        dataclasses.replace(refine, colour_correction_size=33)

    retrained = dataclasses.replace(refine, train_encoder=True, output_dir=str(tmp_path / "other"))
    other_dir = train_autoencoder(retrained, progress=False)
    with pytest.raises(InputError, match="encoder or scaling factor differs"):
        export_checkpoint(diffusion, checkpoint, tmp_path / "refused", vae_path=str(other_dir))
    assert not (tmp_path / "refused").exists()


def test_colour_benchmark_scores_the_round_trip_per_class(tmp_path, capsys):
    from tests.benchmark_scripts import load_benchmark
    from tests.fake_models import save_tiny_autoencoder
    from tests.fakes import make_paired_tiles

    module = load_benchmark("autoencoder_colour")
    pairs = make_paired_tiles(tmp_path / "pairs", n=3, size=32)
    vae = save_tiny_autoencoder(tmp_path / "vae")
    results = module.main(["--data", str(pairs), "--split", "all", "--size", "32", "--autoencoder", str(vae)])
    real, tiny = results["real"]["colours"], results[str(vae)]
    # make_paired_tiles draws red from the class: the real per-class means are ordered by class
    reds = [c[0] for c in real if c is not None]
    assert reds == sorted(reds) and len(tiny["colours"]) == 5
    assert 0 < tiny["psnr"] < 60
    printed = capsys.readouterr().out
    assert "mean RGB per layout class" in printed and "layout fidelity" in printed and "magenta specks" in printed
    assert 0 <= tiny["magenta_share"] <= 1 and 0 <= tiny["images_with_speck"] <= 1
    # Layout fidelity of the real tiles and of the round trip, by the shipped segmenter.
    assert 0 <= tiny["miou"] <= 1 and 0 <= results["real"]["miou"] <= 1 and len(tiny["iou_per_class"]) == 5
    argv = ["--data", str(pairs), "--split", "all", "--size", "32", "--autoencoder", str(vae), "--segmenter", "none"]
    assert "miou" not in module.main(argv)[str(vae)]


def test_latent_roughness_is_one_for_white_noise_and_small_for_smooth_latents():
    from terrasynth.train.autoencoder import latent_roughness

    noise = torch.randn(4, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    assert latent_roughness(noise) == pytest.approx(1.0, abs=0.05)
    smooth = torch.nn.functional.interpolate(noise[..., ::8, ::8], size=(32, 32), mode="bilinear")
    assert latent_roughness(smooth) < 0.3


def test_equivariance_term_trains_the_decoder_on_down_sampled_latents(datasets, tmp_path):  # noqa: F811
    from terrasynth.train.autoencoder import equivariance_loss
    from terrasynth.train.run import read_metrics

    with pytest.raises(ValueError, match="multiple of 8"):  # 2× down-sampling × 4
        dataclasses.replace(autoencoder_config(datasets, tmp_path, 1), crop=36, equivariance_weight=1.0)
    _, _, autoencoder = datasets
    vae = AutoencoderKL.from_pretrained(autoencoder)
    images = torch.rand(2, 3, 32, 32)
    latents = vae.encode(images * 2 - 1).latent_dist.mode()
    # The loss compares at the down-sampled size: a decoder output of the wrong size could not be compared.
    assert equivariance_loss(vae, latents, images, 2).ndim == 0
    config = dataclasses.replace(
        autoencoder_config(datasets, tmp_path / "run", 2), init_from=str(autoencoder), equivariance_weight=1.0
    )
    train_autoencoder(config, progress=False)
    records = read_metrics(tmp_path / "run")
    assert all(r["equivariance"] > 0 for r in records if "equivariance" in r)
    assert any("equivariance" in r for r in records) and any("latent_roughness" in r for r in records)


def test_posterior_mode_trains_the_decoder_on_the_posterior_mean(datasets, tmp_path, monkeypatch):  # noqa: F811
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    with pytest.raises(ValueError, match="posterior must be one of"):
        dataclasses.replace(autoencoder_config(datasets, tmp_path, 1), posterior="mean")

    def no_sampling(self, generator=None):
        raise AssertionError("a posterior sample was drawn")

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", no_sampling)
    _, _, autoencoder = datasets
    config = decoder_refinement(datasets, tmp_path / "mode", 2)
    refined = AutoencoderKL.from_pretrained(
        train_autoencoder(dataclasses.replace(config, posterior="mode"), progress=False)
    )
    decoder_before, decoder_after = parts(AutoencoderKL.from_pretrained(autoencoder))[1], parts(refined)[1]
    assert any(not torch.equal(decoder_before[k], decoder_after[k]) for k in decoder_before)  # it trained
    with pytest.raises(AssertionError, match="posterior sample"):
        train_autoencoder(dataclasses.replace(config, output_dir=str(tmp_path / "sample")), progress=False)


def test_a_zero_step_refinement_refits_a_local_colour_correction_and_keeps_the_weights(datasets, tmp_path):  # noqa: F811
    from terrasynth.models.colour_correction import LocalColourCorrection

    pairs, scenes, autoencoder = datasets
    refit = decoder_refinement(datasets, tmp_path / "refit", 0, colour_correction_size=32, colour_correction="local")
    vae, correction = load_autoencoder_and_correction(train_autoencoder(refit, progress=False))
    assert isinstance(correction, LocalColourCorrection)
    before = AutoencoderKL.from_pretrained(autoencoder).state_dict()
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    with pytest.raises(ValueError, match="colour_correction must be one of"):
        dataclasses.replace(refit, colour_correction="cubic")


def test_adaptive_adversarial_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    from terrasynth.train.autoencoder import adaptive_adversarial_weight

    weight = torch.ones(3, 4, requires_grad=True)
    reconstruction_loss = (2.0 * weight).sum()  # gradient 2 everywhere
    adversarial_loss = (0.5 * weight).sum()  # gradient 0.5 everywhere
    assert adaptive_adversarial_weight(reconstruction_loss, adversarial_loss, weight) == pytest.approx(4.0, rel=1e-3)
    assert adaptive_adversarial_weight(reconstruction_loss, 0.0 * weight.sum(), weight, limit=50.0) == 50.0


def test_discriminator_warms_up_before_the_decoder_sees_an_adaptively_weighted_adversarial_term(datasets, tmp_path):  # noqa: F811
    from terrasynth.train.run import read_metrics

    config = decoder_refinement(
        datasets,
        tmp_path / "gan",
        4,
        adversarial_weight=0.5,
        adversarial_adaptive=True,
        adversarial_start=2,
        discriminator_warmup=1,
    )
    train_autoencoder(config, progress=False)
    records = {r["step"]: r for r in read_metrics(tmp_path / "gan") if "discriminator" in r}
    # logged step s is training step s - 1
    assert records[1]["discriminator"] == 0 and records[1]["adversarial_weight"] == 0
    assert records[2]["discriminator"] > 0 and records[2]["adversarial_weight"] == 0
    for step in (3, 4):
        assert records[step]["adversarial_weight"] > 0 and records[step]["adversarial_weight"] != 0.5
    with pytest.raises(ValueError, match="discriminator_warmup"):
        dataclasses.replace(config, discriminator_warmup=-1)


@pytest.fixture
def decoded(monkeypatch) -> list[torch.Tensor]:
    """Every latent batch ``AutoencoderKL.decode`` is given, in order, while the test runs."""
    latents = []
    original = AutoencoderKL.decode

    def recording_decode(self, z, *args, **kwargs):
        latents.append(z.detach().clone())
        return original(self, z, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "decode", recording_decode)
    return latents


def test_latent_noise_perturbs_what_the_decoder_is_trained_on(datasets, tmp_path, decoded):  # noqa: F811
    _, _, autoencoder = datasets
    config = decoder_refinement(datasets, tmp_path / "plain", 1, posterior="mode", adversarial_weight=0.0)
    train_autoencoder(config, progress=False)
    plain = decoded[0]
    decoded.clear()
    noisy_config = dataclasses.replace(config, output_dir=str(tmp_path / "noisy"), latent_noise=0.5)
    train_autoencoder(noisy_config, progress=False)
    scaling = AutoencoderKL.from_pretrained(autoencoder).config.scaling_factor
    difference = (decoded[0] - plain) * scaling  # the same tiles and modes: only the noise differs
    assert difference.std().item() == pytest.approx(0.5, rel=0.15)
    with pytest.raises(ValueError, match="latent_noise"):
        dataclasses.replace(config, latent_noise=-0.1)


def adversarial_refinement(datasets, output_dir, max_steps: int, **changes):  # noqa: F811
    """A decoder refinement on posterior modes with the adversarial term on from step 1."""
    changes = {"posterior": "mode", "adversarial_weight": 0.5, "adversarial_start": 1, **changes}
    return decoder_refinement(datasets, output_dir, max_steps, **changes)


def tiny_denoiser(datasets, tmp_path):  # noqa: F811
    """A model folder: a diffusion model trained one step in the fixture autoencoder's latent space."""
    diffusion = diffusion_config(datasets, tmp_path / "diffusion", 1)
    train_diffusion(diffusion, progress=False)
    return export_checkpoint(diffusion, list_checkpoints(tmp_path / "diffusion")[-1], tmp_path / "model")


def cached_latents(datasets, path, config, count: int):  # noqa: F811
    """(the latents cached at ``path``, the fixture's autoencoder), checking there are ``count`` of 32 px tiles."""
    from safetensors.torch import load_file

    cache = load_file(path.with_suffix(".safetensors"))["latents"]
    vae = AutoencoderKL.from_pretrained(datasets[2])
    latent_size = 32 // config.autoencoder.downsampling
    assert cache.shape == (count, vae.config.latent_channels, latent_size, latent_size)
    return cache, vae


def test_generated_latents_are_sampled_once_and_decoded_for_the_discriminator(
    datasets,  # noqa: F811
    tmp_path,
    monkeypatch,
    decoded,
):

    from terrasynth.generate.pipeline import LayoutToImagePipeline
    from terrasynth.train.run import read_metrics

    model_dir = tiny_denoiser(datasets, tmp_path)
    config = adversarial_refinement(
        datasets,
        tmp_path / "refine",
        3,
        generated_latents_from=str(model_dir),
        generated_latents_count=3,
        generated_latents_size=32,
    )
    train_autoencoder(config, progress=False)
    cache, vae = cached_latents(datasets, tmp_path / "refine" / "generated-latents", config, 3)
    # From adversarial_start on, each step also decodes a batch of (here whole) crops of the cached latents,
    # unscaled; validation previews them.
    unscaled = cache / vae.config.scaling_factor
    from_cache = [z for z in decoded if all(any(torch.allclose(row, c) for c in unscaled) for row in z)]
    assert [len(z) for z in from_cache] == [config.batch_size, config.batch_size, 3]
    assert (tmp_path / "refine" / "validation" / "generated-step-000003.png").is_file()
    records = [r for r in read_metrics(tmp_path / "refine") if "discriminator" in r]
    assert [r["step"] for r in records] == [1, 2, 3]  # logged step s is training step s - 1
    assert records[0]["discriminator"] == 0 and all(r["discriminator"] > 0 for r in records[1:])

    # A second run with the same settings reuses the cache instead of sampling again.
    def no_sampling(*args, **kwargs):
        raise AssertionError("latents were sampled again")

    monkeypatch.setattr(LayoutToImagePipeline, "__call__", no_sampling)
    train_autoencoder(config, resume="latest", progress=False)

    with pytest.raises(ValueError, match="generated_latents_from needs"):
        dataclasses.replace(config, train_encoder=True)
    with pytest.raises(ValueError, match="generated_latents_size"):
        dataclasses.replace(config, generated_latents_size=16)
    other = save_tiny_model(tmp_path / "other", seed=1, conditioning="class", scene_classes=SCENE_CLASSES)
    with pytest.raises(InputError, match="latent space"):
        train_autoencoder(
            dataclasses.replace(config, generated_latents_from=str(other), output_dir=str(tmp_path / "x")),
            progress=False,
        )


def test_denoised_pairs_are_redrawn_once_and_decoded_against_their_tiles(datasets, tmp_path, monkeypatch, decoded):  # noqa: F811

    from terrasynth.generate.pipeline import LayoutToImagePipeline

    model_dir = tiny_denoiser(datasets, tmp_path)
    calls = []
    original_call = LayoutToImagePipeline.__call__

    def recording_call(self, *args, **kwargs):
        calls.append(kwargs)
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(LayoutToImagePipeline, "__call__", recording_call)
    config = adversarial_refinement(
        datasets,
        tmp_path / "refine",
        2,
        denoised_pairs_from=str(model_dir),
        denoised_pairs_count=3,
        denoised_pairs_size=32,
        denoised_pairs_max_steps=2,
        denoised_pairs_batch_size=2,
    )
    train_autoencoder(config, progress=False)
    cache, vae = cached_latents(datasets, tmp_path / "refine" / "denoised-pairs", config, 3)
    # Each tile's latent starts the sampler a step or two from its end (SDEdit), never from pure noise.
    assert sum(len(c["init_latents"]) for c in calls) == 3
    assert all(c["strength"] in (0.1, 0.2) and c["output_type"] == "latent" for c in calls)
    # Every step decodes the reconstructions and a batch of crops of the cached latents (unscaled).
    unscaled = cache / vae.config.scaling_factor
    crop = config.crop // config.autoencoder.downsampling
    windows = (
        unscaled.unfold(2, crop, 1).unfold(3, crop, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, cache.shape[1], crop, crop)
    )
    from_cache = [z for z in decoded if all(any(torch.allclose(row, w) for w in windows) for row in z)]
    assert [len(z) for z in from_cache[:2]] == [2, 2]

    # A second run with the same settings reuses the cache.
    calls.clear()
    train_autoencoder(dataclasses.replace(config, max_steps=3), resume="latest", progress=False)
    assert calls == []
    with pytest.raises(ValueError, match="denoised_pairs_from needs"):
        dataclasses.replace(config, train_encoder=True)
    with pytest.raises(ValueError, match="denoised_pairs_max_steps"):
        dataclasses.replace(config, denoised_pairs_max_steps=0)
    with pytest.raises(ValueError, match="denoised_pairs_size"):
        dataclasses.replace(config, denoised_pairs_size=16)


def test_random_pair_crops_cut_the_pixels_under_each_latent_window():
    from terrasynth.train.autoencoder import random_pair_crops

    images = torch.rand(3, 3, 32, 32)
    latents = torch.nn.functional.avg_pool2d(images, 4)  # latent pixel (i, j) covers pixels 4i..4i+3, 4j..4j+3
    crops, targets = random_pair_crops(latents, images, 5, 3, 4, torch.Generator().manual_seed(0))
    assert crops.shape == (5, 3, 3, 3) and targets.shape == (5, 3, 12, 12)
    assert torch.allclose(torch.nn.functional.avg_pool2d(targets, 4), crops)


def test_a_deeper_decoder_grows_from_the_trained_one_and_ships_its_moving_average(datasets, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from terrasynth.models.embedded import decoder_depth
    from terrasynth.train.autoencoder import decoder_part

    _, _, autoencoder = datasets
    config = decoder_refinement(datasets, tmp_path / "deep", 4, decoder_ema=0.5)
    config = dataclasses.replace(
        config, autoencoder=dataclasses.replace(config.autoencoder, decoder_layers_per_block=2), adversarial_start=0
    )
    grown = load_autoencoder(train_autoencoder(config, progress=False))
    start = load_autoencoder(autoencoder)
    assert decoder_depth(start) == 1 and decoder_depth(grown) == 2
    assert grown.config.decoder_layers_per_block == 2
    (encoder_before, _), (encoder_after, _) = parts(start), parts(grown)
    assert encoder_before.keys() == encoder_after.keys()
    assert all(torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_before)
    # What ships is the moving average kept in the last checkpoint, not the last step's weights.
    checkpoint = list_checkpoints(tmp_path / "deep")[-1]
    average = load_file(str(checkpoint / "decoder-ema.safetensors"))
    last = load_file(str(checkpoint / "vae.safetensors"))
    shipped = decoder_part(grown).state_dict()
    assert all(torch.equal(shipped[k], average[k]) for k in shipped)
    assert any(not torch.equal(average[f"decoder.{k}"], last[f"decoder.{k}"]) for k in grown.decoder.state_dict())
    with pytest.raises(ValueError, match="decoder_ema must be in"):
        dataclasses.replace(config, decoder_ema=1.0)
    with pytest.raises(ValueError, match="decoder_ema averages"):
        dataclasses.replace(config, decoder_ema=0.9, train_encoder=True)


def test_a_grown_decoder_ships_in_a_model_and_the_model_still_loads(datasets, tmp_path):  # noqa: F811
    from terrasynth.models.embedded import decoder_depth, grow_decoder, save_autoencoder
    from terrasynth.train.export import reexport_model

    model_dir = save_tiny_model(tmp_path / "model", conditioning="class", scene_classes=SCENE_CLASSES)
    vae = EmbeddedDiffusionModel.from_pretrained(model_dir).vae
    save_autoencoder(grow_decoder(vae, 2), tmp_path / "grown")
    shipped = reexport_model(model_dir, str(tmp_path / "grown"), tmp_path / "shipped")
    model = EmbeddedDiffusionModel.from_pretrained(shipped)
    assert decoder_depth(model.vae) == 2
    assert model.config.autoencoder.decoder_layers_per_block == 2
    # Swapping the original decoder back in records its depth again.
    back = reexport_model(shipped, str(model_dir / "vae"), tmp_path / "back")
    assert EmbeddedDiffusionModel.from_pretrained(back).config.autoencoder.decoder_layers_per_block is None


def test_peak_error_is_the_mean_of_the_worst_pixels_errors():
    from terrasynth.train.autoencoder import peak_error

    generator = torch.Generator().manual_seed(0)
    reconstruction, target = (
        torch.rand(2, 3, 10, 10, generator=generator),
        torch.rand(2, 3, 10, 10, generator=generator),
    )
    per_pixel = (reconstruction - target).abs().mean(1).flatten().numpy()
    worst = sorted(per_pixel, reverse=True)[:4]  # 2 % of 200 pixels
    assert peak_error(reconstruction, target, 0.02).item() == pytest.approx(sum(worst) / 4, rel=1e-6)
    assert peak_error(reconstruction, target, 1.0).item() == pytest.approx(per_pixel.mean(), rel=1e-6)
    speck = target.clone()
    speck[0, :, 4:6, 4:6] = 1 - speck[0, :, 4:6, 4:6]  # one wrong dot of 4 pixels
    assert peak_error(speck, target, 0.02).item() > 20 * (speck - target).abs().mean().item()


def test_the_peak_term_is_added_to_the_decoder_loss(datasets, tmp_path, monkeypatch):  # noqa: F811
    import terrasynth.train.autoencoder as trainer

    seen = []
    real_peak_error = trainer.peak_error

    def recording(reconstruction, target, fraction):
        seen.append((tuple(reconstruction.shape), fraction))
        return real_peak_error(reconstruction, target, fraction)

    monkeypatch.setattr(trainer, "peak_error", recording)
    config = decoder_refinement(datasets, tmp_path / "plain", 2, posterior="mode", adversarial_weight=0.0)
    train_autoencoder(config, progress=False)
    assert seen == []
    train_autoencoder(
        dataclasses.replace(config, output_dir=str(tmp_path / "peaks"), peak_weight=1.0, peak_fraction=0.05),
        progress=False,
    )
    assert len(seen) == 2 and all(fraction == 0.05 and shape[1] == 3 for shape, fraction in seen)
    for bad in ({"peak_weight": -1.0}, {"peak_fraction": 0.0}, {"peak_fraction": 1.5}):
        with pytest.raises(ValueError, match="peak"):
            dataclasses.replace(config, **bad)
