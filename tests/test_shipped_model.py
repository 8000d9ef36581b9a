"""The model shipped inside the package: it loads, its samplers agree with its training schedule, the demo runs."""

from __future__ import annotations

import pytest
import torch

from terrasynth.generate.pipeline import LayoutToImagePipeline
from terrasynth.generate.provenance import read_provenance
from terrasynth.models.registry import shipped_model_path


@pytest.fixture(scope="module")
def pipeline():
    torch.set_num_threads(2)
    return LayoutToImagePipeline.from_pretrained(shipped_model_path("default"))


def _layout(size: int = 64) -> torch.Tensor:
    layout = torch.full((size, size), 2, dtype=torch.long)  # woodland
    layout[:, size // 2 :] = 3  # water
    layout[size // 2 - 3 : size // 2 + 3] = 4  # a road across
    return layout


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).pow(2).mean().clamp(min=1e-10)))


def test_deterministic_samplers_solve_the_same_ode(pipeline):
    """DDIM, DPM-Solver++ and Euler integrate the same probability-flow ODE: from the same noise they must land
    near each other, much nearer than two different seeds do. A sampler mismatched with the training schedule
    (the DPM-Solver++ / cosine trap) returns noise and fails this."""
    layout = _layout()
    run = lambda name, steps, seed=0: pipeline(  # noqa: E731
        "aerial image", layout=layout, num_inference_steps=steps, seed=seed, scheduler=name
    ).images[0]
    reference = run("ddim", 50)
    other_seed = run("ddim", 50, seed=1)
    floor = _psnr(reference, other_seed)
    for name in ("dpm++", "euler"):
        assert _psnr(run(name, 20), reference) > floor + 3, name


def test_the_demo_writes_a_page_and_tagged_images(tmp_path):
    from terrasynth.generate.demo import run_demo

    page = run_demo(tmp_path / "demo", steps=3, images_per_layout=1, progress=False)
    text = page.read_text()
    assert "synthetic" in text and "river_village" in text
    images = sorted((tmp_path / "demo").rglob("*-000.*"))
    assert len(images) == 3 + 5
    for path in images:
        record = read_provenance(path)
        assert record is not None and record.synthetic and record.model == "default"
    assert any(p.suffix == ".tif" for p in images)


def test_the_shipped_pix2pix_baseline_follows_its_layout():
    from terrasynth.generate.api import load_pipeline

    generator, model_id, _ = load_pipeline("pix2pix")
    assert model_id == "pix2pix" and generator.layout_classes.names[3] == "water"
    layout = _layout(64)
    images = generator("", layout=layout, num_images=2, seed=0).images
    assert images.shape == (2, 3, 64, 64) and not torch.equal(images[0], images[1])
    # trained on LandCover.ai: woodland (left half) is greener than the road across it
    woodland, road = images[:, :, :20, :20].mean((0, 2, 3)), images[:, :, 29:35, :].mean((0, 2, 3))
    assert woodland[1] - woodland[0] > road[1] - road[0]


def test_the_shipped_domain_encoder_loads_and_scores():
    from terrasynth.evaluate.features import build_extractor

    extractor = build_extractor("domain")
    assert extractor.descriptor["classes"][-1] == "river_lake"
    images = torch.rand(2, 3, 64, 64)
    assert extractor.features(images).shape == (2, extractor.dim)
    probabilities = extractor.probabilities(images)
    assert probabilities.shape == (2, 7) and abs(probabilities.sum(1) - 1).max() < 1e-6


def test_the_shipped_colour_correction_is_a_saved_part_of_the_model(pipeline):
    """The decoder's colour correction is a registered submodule loaded from ``vae/colour_correction.*``, and
    decoding is diffusers' ``vae.decode`` followed by it."""
    from terrasynth.models.colour_correction import apply_colour_correction

    model = pipeline.model
    assert model.colour_correction is not None and model.colour_correction.kind == "local"
    # an MLP on 4 × 5 features per latent pixel: 20·64 + 64 + 64·64 + 64 + 64·3 + 3 parameters
    assert sum(p.numel() for n, p in model.named_parameters() if n.startswith("colour_correction.")) == 5699
    latents = torch.randn(1, model.config.image_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unscaled = latents / model.scaling_factor
        plain = (model.vae.decode(unscaled).sample + 1) / 2
        decoded = model.decode_latents(latents)
    assert torch.equal(decoded, apply_colour_correction(model.colour_correction, unscaled, plain).clamp(0, 1))
    assert (decoded - plain.clamp(0, 1)).abs().max() > 1e-3  # the correction acts
