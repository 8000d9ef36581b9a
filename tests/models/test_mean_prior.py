"""The mean prior: its neighbour pool (ties included), seeded draws, files, and its place in the model folder."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.fake_models import tiny_model, tiny_model_config

from terrasynth.errors import InputError
from terrasynth.models.embedded import EmbeddedDiffusionModel
from terrasynth.models.mean_prior import (
    MEAN_PRIOR_FOLDER,
    MEAN_PRIOR_WEIGHTS_NAME,
    LatentMeanPrior,
    MeanPriorConfig,
    fit_mean_prior,
)

WATER = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])


def water_heavy_prior() -> LatentMeanPrior:
    """20 all-water tiles (means 0..19 in every channel) and 5 all-woodland tiles (means -1)."""
    woodland = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    shares = torch.cat([WATER.expand(20, -1), woodland.expand(5, -1)])
    means = torch.cat([torch.arange(20.0)[:, None].expand(-1, 4), -torch.ones(5, 4)])
    return LatentMeanPrior(shares, means)


def test_the_pool_holds_every_tie_not_the_first_k_in_file_order():
    prior = water_heavy_prior()
    assert prior.pool(WATER, neighbours=3).tolist() == list(range(20))
    drawn = {prior.draw(WATER, 3, seed)[0] for seed in range(200)}
    assert drawn <= set(range(20)) and len(drawn) >= 15


def test_without_ties_the_pool_is_the_k_nearest_by_class_share_distance():
    shares = torch.tensor([[1.0, 0, 0, 0, 0], [0.8, 0.2, 0, 0, 0], [0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 1.0]])
    prior = LatentMeanPrior(shares, torch.randn(4, 4))
    assert sorted(prior.pool(torch.tensor([0.9, 0.1, 0, 0, 0]), neighbours=2).tolist()) == [0, 1]
    assert prior.pool(torch.tensor([0.0, 0, 0, 0, 1.0]), neighbours=1).tolist() == [3]
    assert len(prior.pool(torch.tensor([0.0, 0, 0, 0, 1.0]), neighbours=10)) == 4  # more than there are: all


def test_a_draw_is_fixed_by_its_seed_and_returns_that_tiles_mean():
    prior = water_heavy_prior()
    index, mean = prior.draw(WATER, 8, seed=11)
    assert prior.draw(WATER, 8, seed=11)[0] == index
    assert torch.equal(mean, prior.latent_means[index])
    assert len({prior.draw(WATER, 8, seed)[0] for seed in range(10)}) > 1


def test_bad_tables_and_settings_are_refused():
    with pytest.raises(ValueError, match="same N"):
        LatentMeanPrior(torch.rand(3, 5), torch.rand(4, 4))
    with pytest.raises(ValueError, match="at least one"):
        LatentMeanPrior(torch.rand(0, 5), torch.rand(0, 4))
    with pytest.raises(ValueError, match="finite"):
        LatentMeanPrior(torch.rand(2, 5), torch.tensor([[float("nan")] * 4, [0.0] * 4]))
    with pytest.raises(ValueError, match="5 entries"):
        water_heavy_prior().pool(torch.rand(3), 2)
    with pytest.raises(ValueError, match="neighbours"):
        MeanPriorConfig(neighbours=0)
    with pytest.raises(ValueError, match="start"):
        MeanPriorConfig(start=1.0)
    with pytest.raises(ValueError, match="class_table"):
        tiny_model_config(class_table=None, mean_prior=MeanPriorConfig())


def test_save_and_load_round_trip_and_bad_files_name_the_file(tmp_path):
    prior = water_heavy_prior()
    prior.save(tmp_path)
    loaded = LatentMeanPrior.load(tmp_path)
    assert torch.equal(loaded.class_shares, prior.class_shares) and torch.equal(loaded.latent_means, prior.latent_means)
    path = tmp_path / MEAN_PRIOR_WEIGHTS_NAME
    path.write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable safetensors") as error:
        LatentMeanPrior.load(tmp_path)
    assert str(path) in str(error.value)
    with pytest.raises(InputError, match="missing"):
        LatentMeanPrior.load(tmp_path / "nowhere")


def with_prior(model: EmbeddedDiffusionModel, prior: LatentMeanPrior) -> EmbeddedDiffusionModel:
    model.config = dataclasses.replace(model.config, mean_prior=MeanPriorConfig(neighbours=4, start=0.8))
    model.mean_prior = prior
    return model


def test_a_model_folder_carries_its_prior_and_refuses_a_missing_or_mismatched_one(tmp_path):
    model = with_prior(tiny_model(seed=3), water_heavy_prior())
    model.save_pretrained(tmp_path / "model")
    loaded = EmbeddedDiffusionModel.from_pretrained(tmp_path / "model")
    assert loaded.config.mean_prior == MeanPriorConfig(neighbours=4, start=0.8)
    assert torch.equal(loaded.mean_prior.latent_means, model.mean_prior.latent_means)
    # Another class count than the model's layout classes.
    LatentMeanPrior(torch.rand(3, 7), torch.rand(3, 4)).save(tmp_path / "model" / MEAN_PRIOR_FOLDER)
    with pytest.raises(InputError, match="7 classes"):
        EmbeddedDiffusionModel.from_pretrained(tmp_path / "model")
    (tmp_path / "model" / MEAN_PRIOR_FOLDER / MEAN_PRIOR_WEIGHTS_NAME).unlink()
    with pytest.raises(InputError, match="missing"):
        EmbeddedDiffusionModel.from_pretrained(tmp_path / "model")
    # Config and table go together.
    model.mean_prior = None
    with pytest.raises(ValueError, match="together"):
        model.save_pretrained(tmp_path / "half")
    assert not (tmp_path / "half").exists()


def test_fit_records_each_tiles_latent_mean_and_class_shares():
    model = tiny_model(seed=4)
    generator = torch.Generator().manual_seed(0)
    tiles = [
        {
            "image": torch.rand(3, 16, 16, generator=generator),
            "layout": torch.randint(0, 5, (16, 16), generator=generator),
        }
        for _ in range(5)
    ]
    prior = fit_mean_prior(model, tiles, batch_size=2, progress=False)
    assert len(prior) == 5 and prior.latent_channels == model.config.image_channels
    with torch.no_grad():
        expected = model.encode_images(tiles[3]["image"][None]).mean((2, 3))[0]
    assert torch.allclose(prior.latent_means[3], expected, atol=1e-5)
    counts = torch.bincount(tiles[3]["layout"].flatten(), minlength=5).float() / 256
    assert torch.allclose(prior.class_shares[3], counts, atol=1e-6)
    assert torch.allclose(prior.class_shares.sum(1), torch.ones(5))
