import numpy as np
import pytest
import torch
from PIL import Image

from terrasynth.data.grids import image_grid, to_uint8, write_png


def test_to_uint8_from_tensors_and_arrays():
    image = torch.tensor([0.0, 0.5, 1.0, 2.0]).view(1, 2, 2).expand(3, 2, 2)
    out = to_uint8(image)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == [[0, 128], [255, 255]]
    assert np.array_equal(to_uint8(image.permute(1, 2, 0).numpy()), out)
    assert to_uint8(torch.rand(1, 4, 4)).shape == (4, 4, 3)
    assert to_uint8(np.zeros((4, 4), np.uint8)).shape == (4, 4, 3)


def test_image_grid_places_tiles_in_rows():
    tiles = [torch.full((3, 8, 6), i / 4) for i in range(5)]
    grid = image_grid(tiles, columns=3, padding=2)
    assert grid.shape == (2 * (8 + 2) + 2, 3 * (6 + 2) + 2, 3) and grid.dtype == np.uint8
    assert grid[2, 2, 0] == 0 and grid[12, 10, 0] == 255  # first tile, then the fifth (row 1, column 1)
    assert grid[12, 18].tolist() == [255, 255, 255]  # the empty sixth cell is fill
    with pytest.raises(ValueError, match="at least one image"):
        image_grid([], 3)


def test_write_png_is_readable_and_leaves_no_temporary(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = write_png(tmp_path / "out" / "grid.png", array)
    assert np.array_equal(np.asarray(Image.open(path)), array)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
