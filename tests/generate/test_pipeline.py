"""LayoutToImagePipeline: determinism from seeds, output shapes, every sampler, input checks."""

from __future__ import annotations

import pytest
import torch
from tests.fake_models import SCENE_CLASSES, FakeTextEncoder, save_tiny_model, tiny_model

from terrasynth.errors import InputError
from terrasynth.generate.pipeline import LayoutToImagePipeline, rescale_guided
from terrasynth.generate.schedulers import SCHEDULERS, make_scheduler
from terrasynth.models.mean_prior import LatentMeanPrior, MeanPriorConfig


@pytest.fixture(scope="module")
def pipeline():
    return LayoutToImagePipeline(tiny_model(seed=1), text_encoder=FakeTextEncoder())


@pytest.fixture(scope="module")
def layout():
    return torch.randint(0, 5, (32, 32), generator=torch.Generator().manual_seed(0))


def generate(pipeline, layout=None, **kwargs):
    kwargs = {"num_inference_steps": 2, "seed": 0, **kwargs}
    return pipeline("aerial image of a forest", layout=layout, **kwargs)


def test_images_are_in_range_with_the_layout_shape(pipeline, layout):
    out = generate(pipeline, layout, num_images=2)
    assert out.images.shape == (2, 3, 32, 32)
    assert out.images.dtype == torch.float32
    assert torch.isfinite(out.images).all()
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert out.prompts == ["aerial image of a forest"] * 2


def test_same_seed_same_image(pipeline, layout):
    assert torch.equal(generate(pipeline, layout, seed=5).images, generate(pipeline, layout, seed=5).images)


def test_different_seed_different_image(pipeline, layout):
    a, b = generate(pipeline, layout, seed=5).images, generate(pipeline, layout, seed=6).images
    assert (a - b).abs().mean() > 1e-3


@pytest.mark.parametrize("scheduler", ["dpm++", "ddpm", "dpm++sde", "euler-a"])  # the last three draw noise every step
def test_image_i_with_seed_s_is_image_0_with_seed_s_plus_i(pipeline, layout, scheduler):
    batch = generate(pipeline, layout, num_images=3, seed=10, scheduler=scheduler)
    assert batch.seeds == [10, 11, 12]
    for i in range(3):
        alone = generate(pipeline, layout, num_images=1, seed=10 + i, scheduler=scheduler)
        assert torch.allclose(batch.images[i], alone.images[0], atol=1e-4)
    # Image i does not depend on how the batch is split either.
    split = generate(pipeline, layout, num_images=3, seed=10, batch_size=2, scheduler=scheduler)
    assert torch.allclose(split.images, batch.images, atol=1e-4)


def test_seed_none_draws_and_records_a_seed(pipeline, layout):
    out = generate(pipeline, layout, num_images=2, seed=None)
    assert out.seeds[1] == out.seeds[0] + 1
    again = generate(pipeline, layout, num_images=1, seed=out.seeds[1])
    assert torch.allclose(again.images[0], out.images[1], atol=1e-4)


@pytest.mark.parametrize("shape", [(30, 22), (5, 9), (33, 32)])
def test_output_shape_is_the_layout_shape_even_off_the_size_multiple(pipeline, shape):
    assert pipeline.model.config.size_multiple == 4
    layout = torch.randint(0, 5, shape, generator=torch.Generator().manual_seed(1))
    out = generate(pipeline, layout)
    assert out.images.shape == (1, 3, *shape)
    assert torch.isfinite(out.images).all()


def test_padding_does_not_change_the_layouts_own_area(pipeline, layout):
    """A 30×30 crop of a layout is generated inside a 32×32 canvas: same seed, same noise, and the padded
    rows only extend the layout, so the result differs from the full tile's crop but stays close to it."""
    full = generate(pipeline, layout).images[..., :30, :30]
    cropped = generate(pipeline, layout[:30, :30]).images
    assert cropped.shape == full.shape
    assert (cropped - full).abs().mean() < 0.1


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_runs(pipeline, layout, scheduler):
    out = generate(pipeline, layout, scheduler=scheduler, num_inference_steps=3)
    assert out.images.shape == (1, 3, 32, 32)
    assert torch.isfinite(out.images).all()
    assert torch.equal(out.images, generate(pipeline, layout, scheduler=scheduler, num_inference_steps=3).images)


@pytest.mark.parametrize("name", ["DPM++", "dpm_solver", "dpmpp", "Euler", "ddim", "DPM++SDE", "euler_a"])
def test_scheduler_aliases(pipeline, name):
    sampler = make_scheduler(name, pipeline.training_scheduler)
    assert sampler.config.prediction_type == pipeline.model.config.prediction_type
    assert sampler.config.timestep_spacing == "trailing"


def test_the_sde_variant_of_dpm_solver_is_stochastic(pipeline):
    assert make_scheduler("dpm++sde", pipeline.training_scheduler).config.algorithm_type == "sde-dpmsolver++"
    assert make_scheduler("dpm++", pipeline.training_scheduler).config.algorithm_type == "dpmsolver++"


def test_unknown_scheduler(pipeline):
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("heun9000", pipeline.training_scheduler)


@pytest.mark.parametrize("value", [5, -1])
def test_layout_with_out_of_range_class_is_refused(pipeline, layout, value):
    bad = layout.clone()
    bad[3, 4] = value
    with pytest.raises(InputError, match="outside 0..4"):
        generate(pipeline, bad)


def test_text_only_generation_with_height_and_width(pipeline):
    out = generate(pipeline, None, height=24, width=16, num_images=2)
    assert out.images.shape == (2, 3, 24, 16)
    odd = generate(pipeline, None, height=18, width=10)
    assert odd.images.shape == (1, 3, 18, 10)


def test_prompt_changes_the_image(pipeline, layout):
    a = pipeline("aerial image of a forest", layout=layout, num_inference_steps=2, seed=0).images
    b = pipeline("aerial image of a lake", layout=layout, num_inference_steps=2, seed=0).images
    assert not torch.equal(a, b)


def test_layout_changes_the_image(pipeline, layout):
    a = generate(pipeline, layout).images
    b = generate(pipeline, torch.zeros_like(layout)).images
    assert not torch.equal(a, b)


def test_prompt_list_sets_the_number_of_images(pipeline):
    out = pipeline(["a", "b", "c"], num_images=1, height=8, width=8, num_inference_steps=1, seed=0)
    assert out.prompts == ["a", "b", "c"] and out.images.shape[0] == 3


def test_without_guidance(pipeline, layout):
    out = generate(pipeline, layout, guidance_scale=1.0)
    assert torch.isfinite(out.images).all()
    assert not torch.equal(out.images, generate(pipeline, layout, guidance_scale=3.0).images)


def test_without_a_guidance_scale_the_model_s_own_is_used(layout):
    pipeline = LayoutToImagePipeline(tiny_model(seed=1, guidance_scale=3.0), text_encoder=FakeTextEncoder())
    assert pipeline.default_guidance_scale == 3.0
    own = generate(pipeline, layout).images
    assert torch.equal(own, generate(pipeline, layout, guidance_scale=3.0).images)
    assert not torch.equal(own, generate(pipeline, layout, guidance_scale=2.0).images)
    with pytest.raises(ValueError, match="guidance_scale must be"):
        tiny_model(guidance_scale=0.5)


@pytest.mark.parametrize("field, default", [("guidance_scale", 2.0), ("sampling_steps", 10)])
def test_a_model_saved_before_a_generation_default_existed_loads_with_the_old_behaviour(tmp_path, field, default):
    import json

    from terrasynth.models.embedded import MODEL_CONFIG_NAME, EmbeddedDiffusionModel

    folder = save_tiny_model(tmp_path / "old")
    config_path = folder / MODEL_CONFIG_NAME
    config = json.loads(config_path.read_text())
    del config[field]  # as models exported before the field existed
    config_path.write_text(json.dumps(config))
    assert getattr(EmbeddedDiffusionModel.from_pretrained(folder).config, field) == default


def test_without_a_step_count_the_model_s_own_is_used(layout):
    pipeline = LayoutToImagePipeline(tiny_model(seed=1, sampling_steps=3), text_encoder=FakeTextEncoder())
    assert pipeline.default_steps == 3
    own = pipeline("forest", layout=layout, seed=0).images
    assert torch.equal(own, pipeline("forest", layout=layout, seed=0, num_inference_steps=3).images)
    assert not torch.equal(own, pipeline("forest", layout=layout, seed=0, num_inference_steps=2).images)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="sampling_steps must be"):
            tiny_model(sampling_steps=bad)
    with pytest.raises(ValueError, match="at least 1"):
        pipeline("forest", layout=layout, num_inference_steps=0)


def test_guidance_interval_guides_only_inside_it(pipeline, layout):
    guided, unguided = generate(pipeline, layout, guidance_scale=3.0), generate(pipeline, layout, guidance_scale=1.0)
    # An interval holding every timestep is plain guidance; one holding none is no guidance.
    assert torch.equal(generate(pipeline, layout, guidance_scale=3.0, guidance_interval=(0, 1)).images, guided.images)
    empty = generate(pipeline, layout, guidance_scale=3.0, guidance_interval=(0.9999, 1.0)).images
    assert torch.allclose(empty, unguided.images, atol=1e-5)
    # Guiding only the noisy half differs from both.
    half = generate(pipeline, layout, guidance_scale=3.0, guidance_interval=(0.5, 1.0)).images
    assert not torch.allclose(half, guided.images, atol=1e-4) and not torch.allclose(half, empty, atol=1e-4)


@pytest.mark.parametrize("interval", [(0.6, 0.4), (-0.1, 1.0), (0.0, 1.5), (0.5,), "ab"])
def test_bad_guidance_interval_is_refused(pipeline, layout, interval):
    with pytest.raises(ValueError, match="guidance_interval"):
        generate(pipeline, layout, guidance_interval=interval)


def test_rescale_guided_matches_the_conditional_std_per_image():
    conditional = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    guided = 4.0 * conditional + torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(rescale_guided(guided, conditional, 0.0), guided)
    full = rescale_guided(guided, conditional, 1.0)
    assert torch.allclose(full.std(dim=(1, 2, 3)), conditional.std(dim=(1, 2, 3)), rtol=1e-5)
    # Rescaling changes only the scale: the direction of each image's prediction stays that of the guided one.
    cosine = torch.nn.functional.cosine_similarity(full.flatten(1), guided.flatten(1))
    assert torch.allclose(cosine, torch.ones(3), atol=1e-6)
    half = rescale_guided(guided, conditional, 0.5)
    assert torch.allclose(half, (full + guided) / 2, atol=1e-6)


def test_guidance_rescale_changes_guided_samples_only(pipeline, layout):
    guided = generate(pipeline, layout, guidance_scale=5.0).images
    rescaled = generate(pipeline, layout, guidance_scale=5.0, guidance_rescale=0.7).images
    assert not torch.allclose(rescaled, guided, atol=1e-4)
    # Without guidance there is nothing to rescale.
    unguided = generate(pipeline, layout, guidance_scale=1.0).images
    assert torch.equal(generate(pipeline, layout, guidance_scale=1.0, guidance_rescale=0.7).images, unguided)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_bad_guidance_rescale_is_refused(pipeline, layout, value):
    with pytest.raises(ValueError, match="guidance_rescale"):
        generate(pipeline, layout, guidance_rescale=value)


def test_zero_steps_is_refused(pipeline):
    with pytest.raises(ValueError, match="num_inference_steps"):
        generate(pipeline, None, num_inference_steps=0)


def test_model_without_class_table_takes_no_layout(layout):
    pipeline = LayoutToImagePipeline(tiny_model(class_table=None), text_encoder=FakeTextEncoder())
    assert generate(pipeline, None, height=8, width=8).images.shape == (1, 3, 8, 8)
    with pytest.raises(InputError, match="takes no layout"):
        generate(pipeline, layout)


def test_scene_class_conditioning(layout):
    model = tiny_model(conditioning="class", scene_classes=SCENE_CLASSES)
    with torch.no_grad():
        model.condition.class_embedding.weight.mul_(10)  # untrained embeddings are small; make them count
    pipeline = LayoutToImagePipeline(model)
    forest = pipeline("", layout=layout, num_inference_steps=2, seed=0, scene_class=0).images
    river = pipeline("", layout=layout, num_inference_steps=2, seed=0, scene_class=1).images
    assert not torch.equal(forest, river)


def test_from_pretrained(tmp_path, layout):
    folder = save_tiny_model(tmp_path / "model", seed=1)
    loaded = LayoutToImagePipeline.from_pretrained(folder, scheduler="ddim")
    loaded._text_encoder = FakeTextEncoder()
    direct = LayoutToImagePipeline(tiny_model(seed=1), scheduler="ddim", text_encoder=FakeTextEncoder())
    assert loaded.model_id == str(folder)
    assert torch.equal(generate(loaded, layout).images, generate(direct, layout).images)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_zero_terminal_snr_model_samples_finite_images_with_every_scheduler(layout, scheduler):
    pipe = LayoutToImagePipeline(tiny_model(seed=1, rescale_betas_zero_snr=True), text_encoder=FakeTextEncoder())
    assert float(pipe.training_scheduler.alphas_cumprod[-1]) == 0.0  # the last training step is pure noise
    sampler = make_scheduler(scheduler, pipe.training_scheduler)
    sampler.set_timesteps(4)
    assert int(sampler.timesteps[0]) == 999  # trailing spacing starts there
    out = generate(pipe, layout, scheduler=scheduler, num_inference_steps=4)
    assert torch.isfinite(out.images).all()
    assert 0.0 <= float(out.images.min()) and float(out.images.max()) <= 1.0


def test_latent_output_is_what_the_images_are_decoded_from(pipeline, layout):
    latents = generate(pipeline, layout, num_images=2, output_type="latent").images
    config = pipeline.model.config
    assert latents.shape == (2, config.image_channels, 32 // config.downsampling, 32 // config.downsampling)
    images = generate(pipeline, layout, num_images=2).images
    assert torch.allclose(pipeline.model.decode_latents(latents), images, atol=1e-5)
    # Off the size multiple, the latents cover the image (rounded up), not the padding.
    odd = generate(pipeline, layout[:30, :30], output_type="latent").images
    assert odd.shape[-2:] == (-(-30 // config.downsampling),) * 2
    with pytest.raises(ValueError, match="output_type"):
        generate(pipeline, layout, output_type="pil")


def test_init_latents_with_low_strength_stay_near_them_and_strength_one_ignores_them(pipeline, layout):
    start = generate(pipeline, layout, num_images=2, seed=5, output_type="latent").images
    kwargs = {"num_images": 2, "num_inference_steps": 10, "output_type": "latent", "init_latents": start}
    distance = {}
    for strength in (0.1, 0.5):
        redrawn = generate(pipeline, layout, strength=strength, **kwargs).images
        assert redrawn.shape == start.shape
        distance[strength] = ((redrawn - start) ** 2).mean().item()
    assert distance[0.1] < distance[0.5]  # the fewer steps redrawn, the nearer the start
    # strength 1 runs every step; on a zero-terminal-SNR schedule the first is pure noise, so the start is lost.
    zero_snr = LayoutToImagePipeline(tiny_model(seed=1, rescale_betas_zero_snr=True), text_encoder=FakeTextEncoder())
    full = generate(zero_snr, layout, strength=1.0, **kwargs).images
    plain = generate(zero_snr, layout, num_images=2, num_inference_steps=10, output_type="latent").images
    assert torch.allclose(full, plain, atol=1e-5)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_init_latents_work_with_every_scheduler(pipeline, layout, scheduler):
    start = generate(pipeline, layout, output_type="latent").images
    out = generate(pipeline, layout, scheduler=scheduler, num_inference_steps=4, init_latents=start, strength=0.5)
    assert torch.isfinite(out.images).all() and out.images.shape == (1, 3, 32, 32)


def test_bad_init_latents_or_strength_are_refused(pipeline, layout):
    start = generate(pipeline, layout, output_type="latent").images
    with pytest.raises(ValueError, match="strength"):
        generate(pipeline, layout, init_latents=start, strength=0.0)
    with pytest.raises(ValueError, match="init_latents must be"):
        generate(pipeline, layout, init_latents=start[:, :, :4], strength=0.5)
    with pytest.raises(ValueError, match="2 init_latents for 3 images"):
        generate(pipeline, layout, num_images=3, init_latents=start.repeat(2, 1, 1, 1), strength=0.5)


def prior_pipeline(start: float = 0.9) -> LayoutToImagePipeline:
    """A tiny model whose mean prior holds two all-water tiles (latent means +20 and +30) and one all-woodland
    tile (mean -20): values far outside the noise, so the start can be seen in the denoiser's input."""
    shares = torch.tensor([[0.0, 0, 0, 1, 0], [0.0, 0, 0, 1, 0], [0.0, 0, 1, 0, 0]])
    means = torch.tensor([20.0, 30.0, -20.0])[:, None].expand(-1, 4)
    model = tiny_model(seed=1, rescale_betas_zero_snr=True, mean_prior=MeanPriorConfig(neighbours=1, start=start))
    model.mean_prior = LatentMeanPrior(shares, means)
    return LayoutToImagePipeline(model, text_encoder=FakeTextEncoder())


def first_denoiser_inputs(pipeline, monkeypatch, **kwargs):
    """(first timestep, first noisy latents) the denoiser sees in a call."""
    seen = []
    predict = pipeline.model.predict

    def spy(noisy, timesteps, *rest):
        seen.append((int(timesteps[0]), noisy.clone()))
        return predict(noisy, timesteps, *rest)

    monkeypatch.setattr(pipeline.model, "predict", spy)
    output = pipeline("a lake", **{"num_inference_steps": 10, "seed": 3, "guidance_scale": 1.0, **kwargs})
    monkeypatch.undo()
    return output, seen[0]


def test_the_mean_prior_starts_from_the_drawn_mean_at_its_start_level(monkeypatch):
    pipeline = prior_pipeline(start=0.9)
    water = torch.full((32, 32), 3)
    output, (t, noisy) = first_denoiser_inputs(pipeline, monkeypatch, layout=water, num_images=3)
    assert t == 899  # 10 trailing steps: 999, 899, ...; the first at or below 0.9 × 1000
    draws = output.mean_prior_draws
    assert [d["start_timestep"] for d in draws] == [899] * 3
    assert {d["training_tile"] for d in draws} <= {0, 1}  # both all-water tiles tie; never the woodland one
    signal = pipeline.training_scheduler.alphas_cumprod[899].sqrt()
    for image, draw in zip(noisy, draws):
        assert torch.allclose(image.mean((1, 2)), signal * torch.tensor(draw["latent_mean"]), atol=0.25)
    # Off: all ten steps from pure noise. Same call, same draws.
    plain, (t, noisy) = first_denoiser_inputs(pipeline, monkeypatch, layout=water, mean_prior=False)
    assert t == 999 and plain.mean_prior_draws is None and noisy.mean().abs() < 0.25
    again, _ = first_denoiser_inputs(pipeline, monkeypatch, layout=water, num_images=3)
    assert again.mean_prior_draws == draws and torch.equal(again.images, output.images)


def test_the_mean_prior_draws_by_each_layouts_class_shares(monkeypatch):
    pipeline = prior_pipeline(start=0.5)
    layouts = torch.stack([torch.full((32, 32), 2), torch.full((32, 32), 3)])  # woodland, water
    output, (t, _) = first_denoiser_inputs(pipeline, monkeypatch, layout=layouts, num_images=2)
    assert t == 499
    assert output.mean_prior_draws[0]["training_tile"] == 2
    assert output.mean_prior_draws[1]["training_tile"] in (0, 1)


def test_the_mean_prior_is_skipped_where_it_cannot_apply_and_refused_when_asked_for_there(monkeypatch):
    pipeline = prior_pipeline()
    water = torch.full((32, 32), 3)
    # No layout, init latents given, or one step: sampling runs as without a prior.
    assert pipeline("a lake", num_inference_steps=2, seed=0).mean_prior_draws is None
    start = torch.zeros(1, 4, 16, 16)
    assert pipeline("", layout=water, init_latents=start, strength=0.5, num_inference_steps=2).mean_prior_draws is None
    assert pipeline("", layout=water, num_inference_steps=1).mean_prior_draws is None
    with pytest.raises(ValueError, match="give a layout"):
        pipeline("a lake", num_inference_steps=2, mean_prior=True)
    plain = LayoutToImagePipeline(tiny_model(seed=1), text_encoder=FakeTextEncoder())
    with pytest.raises(ValueError, match="no mean prior"):
        plain("", layout=water, num_inference_steps=2, mean_prior=True)
