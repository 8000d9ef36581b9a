import numpy as np
import torch

from terrasynth.evaluate.baselines import ColourFill, DownUpReference, NearestLayoutRetrieval, matched_training_tiles
from terrasynth.evaluate.memorisation import memorisation_scores


def pairs(n=4, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    layouts = torch.randint(0, 3, (n, size, size), generator=generator)
    colours = torch.tensor([[0.1, 0.5, 0.1], [0.2, 0.2, 0.8], [0.9, 0.9, 0.9]])
    images = colours[layouts].permute(0, 3, 1, 2) + 0.01 * torch.randn(n, 3, size, size, generator=generator)
    return images.clamp(0, 1), layouts


def test_colour_fill_learns_class_colours():
    images, layouts = pairs()
    fill = ColourFill(3).fit(images, layouts)
    assert torch.allclose(fill.mean[2], torch.tensor([0.9, 0.9, 0.9]), atol=0.02)
    out = fill.generate(layouts[0], seed=1)
    assert out.shape == (3, 16, 16) and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, fill.generate(layouts[0], seed=1))


def test_retrieval_returns_the_training_tile_of_the_same_layout():
    images, layouts = pairs()
    retrieval = NearestLayoutRetrieval(3).fit(images, layouts)
    assert retrieval.nearest(layouts[2]) == 2
    assert torch.equal(retrieval.generate(layouts[2]), images[2])


def test_matched_training_tiles_are_distinct_and_closest_in_class_shares():
    import pytest

    def layout(water_rows: int) -> torch.Tensor:  # water (3) in the top rows, woodland (2) below
        out = torch.full((8, 8), 2)
        out[:water_rows] = 3
        return out

    train = [layout(0), layout(8), layout(7), layout(2), layout(4)]
    # Both wanted layouts are mostly water: the all-water tile goes to the all-water layout, the 7/8 one to the
    # other, though it too would rather have the all-water tile.
    assert matched_training_tiles(train, [layout(7), layout(8)], 5) == [2, 1]
    assert matched_training_tiles(train, [layout(2), layout(0), layout(5)], 5) == [3, 0, 4]
    with pytest.raises(ValueError, match="one to one"):
        matched_training_tiles(train[:1], [layout(1), layout(2)], 5)


def test_down_up_keeps_size_and_loses_detail():
    image = torch.rand(3, 64, 64)
    blurred = DownUpReference(16).apply(image)
    assert blurred.shape == image.shape and blurred.std() < image.std()


def test_memorisation_flags_copies_only():
    rng = np.random.default_rng(0)
    train, heldout = rng.normal(size=(50, 8)), rng.normal(size=(30, 8))
    fake = np.concatenate([train[:3] + 1e-6, rng.normal(size=(7, 8))])
    result = memorisation_scores(train, fake, heldout)
    assert [f[0] for f in result["flagged"]] == [0, 1, 2] and [f[1] for f in result["flagged"]] == [0, 1, 2]
    assert result["flagged_fraction"] == 0.3
    assert memorisation_scores(train, heldout)["flagged_fraction"] < 0.1
