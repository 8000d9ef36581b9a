"""The decoder's per-image colour correction: fitted by least squares, applied in decoding, saved beside the
autoencoder, carried by model folders, refitted or dropped by decoder training."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL
from tests.fake_models import save_tiny_autoencoder, tiny_model

from terrasynth.errors import InputError
from terrasynth.models.embedded import (
    COLOUR_CORRECTION_NAME,
    EmbeddedDiffusionModel,
    colour_offset,
    decode_images,
    fit_colour_correction,
    load_autoencoder,
    save_autoencoder,
    set_colour_correction,
)


def coloured_tiles(count: int = 24, size: int = 16) -> torch.Tensor:
    """Flat tiles of random colours with a little texture: the case a GroupNorm decoder renders too grey."""
    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(count, 3, 1, 1, generator=generator) * 0.6 + 0.2
    return (colours + 0.05 * torch.randn(count, 3, size, size, generator=generator)).clamp(0, 1)


def mean_colour_error(vae, images: torch.Tensor) -> float:
    with torch.no_grad():
        decoded = decode_images(vae, vae.encode(images * 2 - 1).latent_dist.mode())
    return float((decoded.mean((2, 3)) - images.mean((2, 3))).abs().mean())


def test_fitted_correction_reduces_the_mean_colour_error_of_a_round_trip(tmp_path):
    vae = load_autoencoder(save_tiny_autoencoder(tmp_path / "ae")).eval()
    images = coloured_tiles()
    before = mean_colour_error(vae, images)
    correction = fit_colour_correction(vae, images.split(8))
    assert correction.shape == (3, vae.config.latent_channels + 1)
    set_colour_correction(vae, correction)
    assert mean_colour_error(vae, images) < 0.8 * before  # an untrained autoencoder: latent means say little
    set_colour_correction(vae, -correction)
    assert mean_colour_error(vae, images) > before


def test_offset_is_linear_in_the_latent_mean_plus_a_constant():
    correction = torch.zeros(3, 5)
    correction[:, 4] = torch.tensor([0.1, -0.2, 0.3])  # constant part
    correction[0, 0] = 2.0
    latents = torch.zeros(2, 4, 3, 3)
    latents[1, 0] = 0.5
    offset = colour_offset(correction, latents)
    assert torch.allclose(offset[0], torch.tensor([0.1, -0.2, 0.3]))
    assert torch.allclose(offset[1], torch.tensor([1.1, -0.2, 0.3]))


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
    set_colour_correction(model.vae, correction)
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "vae" / COLOUR_CORRECTION_NAME).is_file()
    for dtype in (None, torch.float16):
        model.save_pretrained(tmp_path / "saved", dtype=dtype)
        loaded = EmbeddedDiffusionModel.from_pretrained(tmp_path / "saved")
        assert torch.equal(loaded.vae.colour_correction, correction)
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
    set_colour_correction(vae, torch.zeros(3, 5))
    save_autoencoder(vae, tmp_path / "out")
    assert (tmp_path / "out" / COLOUR_CORRECTION_NAME).is_file()
    save_autoencoder(set_colour_correction(vae, None), tmp_path / "out")
    assert not (tmp_path / "out" / COLOUR_CORRECTION_NAME).exists()
    assert load_autoencoder(tmp_path / "out").colour_correction is None


@pytest.mark.parametrize("content", [{"matrix": [[1, 2], [3, 4]]}, {"matrix": "abc"}, [1, 2, 3], {}])
def test_a_bad_correction_file_names_itself(tmp_path, content):
    folder = save_tiny_autoencoder(tmp_path / "ae")
    (folder / COLOUR_CORRECTION_NAME).write_text(json.dumps(content))
    with pytest.raises(InputError, match=COLOUR_CORRECTION_NAME):
        load_autoencoder(folder)
