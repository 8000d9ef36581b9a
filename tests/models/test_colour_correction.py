"""The decoder's colour correction (global: one shift per image; local: an offset map): fitted on round trips,
applied in decoding, saved beside the autoencoder, carried by model folders, refitted or dropped by decoder
training."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL
from tests.fake_models import save_tiny_autoencoder, tiny_model

from terrasynth.errors import InputError
from terrasynth.models.colour_correction import (
    COLOUR_CORRECTION_NAME,
    COLOUR_CORRECTION_WEIGHTS_NAME,
    GlobalColourCorrection,
    LocalColourCorrection,
    fit_colour_correction,
    fit_global_correction,
    fit_local_correction,
)
from terrasynth.models.embedded import (
    EmbeddedDiffusionModel,
    decode_images,
    load_autoencoder,
    load_autoencoder_and_correction,
    save_autoencoder,
)


def coloured_tiles(count: int = 24, size: int = 16) -> torch.Tensor:
    """Flat tiles of random colours with a little texture: the case a GroupNorm decoder renders too grey."""
    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(count, 3, 1, 1, generator=generator) * 0.6 + 0.2
    return (colours + 0.05 * torch.randn(count, 3, size, size, generator=generator)).clamp(0, 1)


def mean_colour_error(vae, images: torch.Tensor, correction=None) -> float:
    with torch.no_grad():
        decoded = decode_images(vae, vae.encode(images * 2 - 1).latent_dist.mode(), correction)
    return float((decoded.mean((2, 3)) - images.mean((2, 3))).abs().mean())


def test_fitted_correction_reduces_the_mean_colour_error_of_a_round_trip(tmp_path):
    vae = load_autoencoder(save_tiny_autoencoder(tmp_path / "ae")).eval()
    images = coloured_tiles()
    before = mean_colour_error(vae, images)
    correction = fit_colour_correction(vae, images.split(8))
    assert correction.matrix.shape == (3, vae.config.latent_channels + 1)
    assert (
        mean_colour_error(vae, images, correction) < 0.8 * before
    )  # an untrained autoencoder: latent means say little
    assert mean_colour_error(vae, images, GlobalColourCorrection(-correction.matrix)) > before


def test_offset_is_linear_in_the_latent_mean_plus_a_constant():
    correction = torch.zeros(3, 5)
    correction[:, 4] = torch.tensor([0.1, -0.2, 0.3])  # constant part
    correction[0, 0] = 2.0
    latents = torch.zeros(2, 4, 3, 3)
    latents[1, 0] = 0.5
    offset = GlobalColourCorrection(correction)(latents)
    assert offset.shape == (2, 3, 1, 1)
    assert torch.allclose(offset[0].flatten(), torch.tensor([0.1, -0.2, 0.3]))
    assert torch.allclose(offset[1].flatten(), torch.tensor([1.1, -0.2, 0.3]))


def test_too_few_images_to_fit_is_a_clear_error(tmp_path):
    vae = load_autoencoder(save_tiny_autoencoder(tmp_path / "ae")).eval()
    with pytest.raises(InputError, match="at least 5 images"):
        fit_colour_correction(vae, [coloured_tiles(count=3)])


def test_model_folders_carry_the_correction_and_decoding_applies_it(tmp_path):
    model = tiny_model(seed=2)
    latents = torch.randn(2, model.config.image_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.decode_latents(latents)
    correction = torch.zeros(3, model.config.image_channels + 1)
    correction[:, -1] = torch.tensor([0.2, -0.1, 0.05])
    model.colour_correction = GlobalColourCorrection(correction)
    assert "colour_correction.matrix" in dict(model.named_buffers())  # a registered part of the model
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "vae" / COLOUR_CORRECTION_NAME).is_file()
    for dtype in (None, torch.float16):
        model.save_pretrained(tmp_path / "saved", dtype=dtype)
        loaded = EmbeddedDiffusionModel.from_pretrained(tmp_path / "saved")
        assert torch.equal(loaded.colour_correction.matrix, correction)
        with torch.no_grad():
            corrected = loaded.decode_latents(latents)
        expected = plain + correction[:, -1][None, :, None, None]
        inside = (plain > 0) & (plain < 1) & (expected > 0) & (expected < 1)  # where no clamp acted
        assert inside.float().mean() > 0.5
        assert torch.allclose(corrected[inside], expected[inside], atol=1e-2 if dtype else 1e-5)
    # Weights files stay plain diffusers ones: the correction is not a tensor in them.
    assert "colour_correction" not in AutoencoderKL.from_pretrained(tmp_path / "saved" / "vae").state_dict()


def test_saving_without_a_correction_removes_a_stale_file(tmp_path):
    vae = load_autoencoder(save_tiny_autoencoder(tmp_path / "ae"))
    save_autoencoder(vae, tmp_path / "out", GlobalColourCorrection(torch.zeros(3, 5)))
    assert (tmp_path / "out" / COLOUR_CORRECTION_NAME).is_file()
    save_autoencoder(vae, tmp_path / "out")
    assert not (tmp_path / "out" / COLOUR_CORRECTION_NAME).exists()
    assert load_autoencoder_and_correction(tmp_path / "out")[1] is None


@pytest.mark.parametrize("content", [{"matrix": [[1, 2], [3, 4]]}, {"matrix": "abc"}, [1, 2, 3], {}])
def test_a_bad_correction_file_names_itself(tmp_path, content):
    folder = save_tiny_autoencoder(tmp_path / "ae")
    (folder / COLOUR_CORRECTION_NAME).write_text(json.dumps(content))
    with pytest.raises(InputError, match=COLOUR_CORRECTION_NAME):
        load_autoencoder_and_correction(folder)


def two_colour_tiles(count: int = 24, size: int = 16) -> torch.Tensor:
    """Tiles whose left and right halves are flat surfaces of different random colours."""
    generator = torch.Generator().manual_seed(1)
    left, right = (torch.rand(count, 3, 1, 1, generator=generator) * 0.6 + 0.2 for _ in range(2))
    tiles = torch.cat([left.expand(-1, -1, size, size // 2), right.expand(-1, -1, size, size // 2)], 3)
    return (tiles + 0.05 * torch.randn(count, 3, size, size, generator=generator)).clamp(0, 1)


def half_colour_error(vae, images: torch.Tensor, correction=None) -> float:
    with torch.no_grad():
        decoded = decode_images(vae, vae.encode(images * 2 - 1).latent_dist.mode(), correction)
    halves = lambda x: torch.stack([h.mean((2, 3)) for h in x.chunk(2, dim=3)])  # noqa: E731
    return float((halves(decoded) - halves(images)).abs().mean())


def test_a_local_correction_fits_an_offset_that_varies_across_the_image_where_a_global_one_cannot():
    # What the decoder "missed" depends on each latent pixel's own value: a dark lake beside a bright field.
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(32, 4, 8, 8, generator=generator)
    residuals = 0.2 * torch.tanh(latents[:, :1]).expand(-1, 3, -1, -1) + torch.tensor([0.05, 0.0, -0.05])[:, None, None]
    local = fit_local_correction(latents, residuals, steps=300, hidden=16)
    global_ = fit_global_correction(latents, residuals.mean((2, 3)))
    local_error = float(((local(latents) - residuals) ** 2).mean())
    global_error = float(((global_(latents) - residuals) ** 2).mean())
    assert local_error < 0.2 * global_error
    # Fitting is seeded and leaves the caller's random state alone.
    state = torch.random.get_rng_state()
    again = fit_local_correction(latents, residuals, steps=300, hidden=16)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(again(latents), local(latents))


def test_fitting_a_local_correction_on_round_trips_restores_each_half_of_two_colour_tiles(tmp_path):
    vae = load_autoencoder(save_tiny_autoencoder(tmp_path / "ae")).eval()
    images = two_colour_tiles(size=32)
    before = half_colour_error(vae, images)
    local = fit_colour_correction(vae, images.split(8), "local", steps=300)
    assert isinstance(local, LocalColourCorrection)
    assert half_colour_error(vae, images, local) < 0.8 * before
    with pytest.raises(ValueError, match="kind must be one of"):
        fit_colour_correction(vae, images.split(8), "cubic")


def test_an_unfitted_local_correction_changes_nothing():
    latents = torch.randn(2, 4, 6, 6)
    assert torch.equal(LocalColourCorrection(4)(latents), torch.zeros(2, 3, 6, 6))
    with pytest.raises(ValueError, match="odd"):
        LocalColourCorrection(4, windows=(8,))


def test_a_local_correction_survives_saving_in_an_autoencoder_and_a_float16_model(tmp_path):
    model = tiny_model(seed=2)
    channels = model.config.image_channels
    correction = LocalColourCorrection(channels, hidden=8)
    torch.nn.init.normal_(correction.layers[-1].weight, std=0.1)  # a non-zero correction
    latents = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(1))
    model.colour_correction = correction
    save_autoencoder(model.vae, tmp_path / "ae", correction)
    saved = json.loads((tmp_path / "ae" / COLOUR_CORRECTION_NAME).read_text())
    assert saved["kind"] == "local" and "state" not in saved  # weights in safetensors, not in the JSON
    assert (tmp_path / "ae" / COLOUR_CORRECTION_WEIGHTS_NAME).is_file()
    assert torch.equal(load_autoencoder_and_correction(tmp_path / "ae")[1](latents), correction(latents))
    model.save_pretrained(tmp_path / "model", dtype=torch.float16)
    loaded = EmbeddedDiffusionModel.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.colour_correction(latents), correction(latents))  # kept in float32
    with torch.no_grad():
        uncorrected = (loaded.vae.decode(latents).sample + 1) / 2
        corrected = loaded.decode_latents(latents * loaded.scaling_factor)
    offset = torch.nn.functional.interpolate(correction(latents), corrected.shape[-2:], mode="bilinear")
    inside = ((uncorrected + offset) > 0) & ((uncorrected + offset) < 1)
    assert inside.float().mean() > 0.5
    assert torch.allclose(corrected[inside], (uncorrected + offset)[inside], atol=1e-5)
    assert offset.abs().max() > 0.01


@pytest.mark.parametrize(
    "content, message",
    [
        ({"kind": "local", "latent_channels": 3, "hidden": 8, "windows": [9], "state": {}}, "latent channels"),
        ({"kind": "local", "latent_channels": 4, "hidden": 8, "windows": [9], "state": {}}, "not a valid local"),
        ({"kind": "local", "latent_channels": 4}, "not a valid local"),
        ({"kind": "cubic"}, "'kind' must be one of"),
    ],
)
def test_a_bad_local_correction_file_names_itself(tmp_path, content, message):
    folder = save_tiny_autoencoder(tmp_path / "ae")
    (folder / COLOUR_CORRECTION_NAME).write_text(json.dumps(content))
    with pytest.raises(InputError, match=message) as raised:
        load_autoencoder_and_correction(folder)
    assert COLOUR_CORRECTION_NAME in str(raised.value)


def test_local_correction_weights_live_in_safetensors_and_old_json_weights_still_load(tmp_path):
    folder = save_tiny_autoencoder(tmp_path / "ae")
    vae = load_autoencoder(folder)
    channels = vae.config.latent_channels
    correction = LocalColourCorrection(channels, hidden=8)
    torch.nn.init.normal_(correction.layers[-1].weight, std=0.1)
    latents = torch.randn(1, channels, 6, 6, generator=torch.Generator().manual_seed(3))
    # A file written before the weights moved to safetensors: lists of numbers in the JSON.
    legacy = {**correction.to_json(), "state": {k: v.tolist() for k, v in correction.state_dict().items()}}
    del legacy["weights"]
    (folder / COLOUR_CORRECTION_NAME).write_text(json.dumps(legacy))
    loaded, loaded_correction = load_autoencoder_and_correction(folder)
    assert torch.allclose(loaded_correction(latents), correction(latents))
    # Saved again, it moves to the new layout; a global correction after it leaves no stale weights file.
    save_autoencoder(loaded, folder, loaded_correction)
    assert "state" not in json.loads((folder / COLOUR_CORRECTION_NAME).read_text())
    assert torch.allclose(load_autoencoder_and_correction(folder)[1](latents), correction(latents))
    save_autoencoder(loaded, folder, GlobalColourCorrection(torch.zeros(3, channels + 1)))
    assert not (folder / COLOUR_CORRECTION_WEIGHTS_NAME).exists()
    assert load_autoencoder_and_correction(folder)[1].kind == "global"


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_missing_or_broken_correction_weights_file_names_itself(tmp_path, damage):
    folder = save_tiny_autoencoder(tmp_path / "ae")
    vae = load_autoencoder(folder)
    save_autoencoder(vae, folder, LocalColourCorrection(vae.config.latent_channels, hidden=8))
    weights = folder / COLOUR_CORRECTION_WEIGHTS_NAME
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(b"not safetensors")
    with pytest.raises(InputError, match=COLOUR_CORRECTION_WEIGHTS_NAME):
        load_autoencoder_and_correction(folder)
