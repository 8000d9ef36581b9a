import random

import pytest
import torch
from affine import Affine
from tests.fakes import UTM_33N, grid_transform

from terrasynth.data.transforms import CenterCrop, Compose, RandomCrop, RandomDihedral, Resize, crop, dihedral

TRANSFORM = list(grid_transform())[:6]


def aligned_sample(height: int = 12, width: int = 16, seed: int = 0) -> dict:
    """Image channel 0 is the layout / 4; channels 1 and 2 hold each pixel's original row and column."""
    layout = torch.randint(0, 5, (height, width), generator=torch.Generator().manual_seed(seed))
    rows = torch.arange(height).view(-1, 1).expand(height, width).float()
    cols = torch.arange(width).view(1, -1).expand(height, width).float()
    image = torch.stack([layout.float() / 4, rows, cols])
    return {
        "image": image,
        "layout": layout,
        "caption": "x",
        "georeference": {"crs": UTM_33N, "transform": TRANSFORM},
    }


def assert_aligned(sample: dict):
    assert sample["image"].shape[-2:] == sample["layout"].shape
    assert torch.equal((sample["image"][0] * 4).round().long(), sample["layout"])


def assert_pixels_stay_on_the_ground(sample: dict):
    """Each new pixel's centre, through the new transform, lands where its original pixel's centre was."""
    old, new = Affine(*TRANSFORM), Affine(*sample["georeference"]["transform"])
    height, width = sample["layout"].shape
    for r in range(height):
        for c in range(width):
            row, col = sample["image"][1, r, c].item(), sample["image"][2, r, c].item()
            assert new @ (c + 0.5, r + 0.5) == pytest.approx(old @ (col + 0.5, row + 0.5))


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_dihedral_moves_image_layout_and_georeference_together(k, flip):
    out = dihedral(aligned_sample(), k, flip)
    assert_aligned(out)
    assert out["layout"].shape == ((12, 16) if k % 2 == 0 else (16, 12))
    assert_pixels_stay_on_the_ground(out)


def test_random_dihedral_is_seeded_and_reaches_all_eight():
    sample = aligned_sample(6, 6)
    seen = set()
    for seed in range(40):
        out = RandomDihedral(random.Random(seed))(sample)
        assert_aligned(out)
        assert torch.equal(out["layout"], RandomDihedral(random.Random(seed))(sample)["layout"])
        seen.add(tuple(out["layout"].flatten().tolist()))
    assert len(seen) == 8


def test_random_crop_keeps_alignment_and_georeference():
    for seed in range(10):
        out = RandomCrop(8, random.Random(seed))(aligned_sample())
        assert out["image"].shape == (3, 8, 8) and out["layout"].shape == (8, 8)
        assert_aligned(out)
        assert_pixels_stay_on_the_ground(out)
    with pytest.raises(ValueError, match="larger than the image"):
        RandomCrop(13)(aligned_sample())


def test_center_crop_and_crop():
    out = CenterCrop(8)(aligned_sample())
    assert out["image"][1, 0, 0] == 2 and out["image"][2, 0, 0] == 4
    assert_aligned(out)
    assert_pixels_stay_on_the_ground(crop(aligned_sample(), 3, 5, 4, 6))
    with pytest.raises(ValueError, match="larger than the image"):
        CenterCrop(20)(aligned_sample())


def test_resize_changes_both_dims_of_image_and_layout():
    sample = aligned_sample(12, 16)
    sample["image"] = sample["image"][:1].clamp(0, 1)
    out = Resize(8)(sample)
    assert out["image"].shape == (1, 8, 8) and out["layout"].shape == (8, 8)
    assert out["layout"].dtype == torch.int64
    # The grid still spans the same ground: corners map to the same points.
    old, new = Affine(*TRANSFORM), Affine(*out["georeference"]["transform"])
    assert new @ (0, 0) == pytest.approx(old @ (0, 0))
    assert new @ (8, 8) == pytest.approx(old @ (16, 12))
    # A sample with the right width but another height is still resized.
    tall = {"image": torch.rand(3, 12, 8), "layout": torch.zeros(12, 8, dtype=torch.long)}
    assert Resize(8)(tall)["layout"].shape == (8, 8)


def test_transforms_leave_the_input_sample_alone_and_compose():
    sample = aligned_sample()
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in sample.items()}
    out = Compose([RandomCrop(10, random.Random(0)), RandomDihedral(random.Random(1)), Resize(5)])(sample)
    assert out["layout"].shape == (5, 5) and out["caption"] == "x"
    assert torch.equal(sample["layout"], before["layout"]) and sample["georeference"] == before["georeference"]


def test_samples_without_layout_or_georeference_work():
    out = Compose([RandomCrop(4), RandomDihedral(), Resize(2)])({"image": torch.rand(3, 6, 6), "label": 1})
    assert out["image"].shape == (3, 2, 2) and out["label"] == 1 and "georeference" not in out
