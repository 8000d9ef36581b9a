import numpy as np
import pytest
import torch
from tests.fakes import UTM_33N, grid_transform, write_geotiff, write_mask_png, write_rgb

from terrasynth.data.images import list_images, read_georeference, read_image, read_mask
from terrasynth.errors import InputError


def test_list_images_is_sorted_and_skips_hidden_and_other_files(tmp_path):
    for name in ("b.png", "a.jpg", "C.TIF"):
        write_rgb(tmp_path / name, np.zeros((4, 4, 3)))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._a.jpg").write_bytes(b"\0\5\26\7")  # macOS AppleDouble file
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["C.TIF", "a.jpg", "b.png"]


def test_list_images_of_an_empty_or_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no image files") as caught:
        list_images(tmp_path)
    assert caught.value.path == tmp_path
    with pytest.raises(InputError, match="folder not found"):
        list_images(tmp_path / "nope")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_read_image_is_float_chw_in_unit_range(tmp_path, channels):
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, (8, 12, channels), dtype=np.uint8)
    Image.fromarray(array.squeeze()).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png")
    assert image.shape == (3, 8, 12) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    if channels == 3:
        assert torch.allclose(image, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


def test_truncated_or_fake_images_are_input_errors_naming_the_file(tmp_path):
    path = write_rgb(tmp_path / "x.png", np.random.default_rng(0).integers(0, 256, (32, 32, 3)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="cannot read image") as caught:
        read_image(path)
    assert caught.value.path == path
    fake = tmp_path / "y.jpg"
    fake.write_text("not a jpeg")
    with pytest.raises(InputError, match="y.jpg"):
        read_image(fake)
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("mode", ["P", "L"])
def test_read_mask_gives_the_class_indices(tmp_path, mode):
    mask = np.arange(20, dtype=np.uint8).reshape(4, 5) % 5
    path = write_mask_png(tmp_path / "m.png", mask, mode)
    read = read_mask(path, num_classes=5)
    assert read.dtype == torch.int64 and read.shape == (4, 5)
    assert np.array_equal(read.numpy(), mask)


def test_class_ids_out_of_range_are_an_input_error_naming_the_mask(tmp_path):
    path = write_mask_png(tmp_path / "m.png", np.array([[0, 1], [2, 7]], np.uint8), "L")
    with pytest.raises(InputError, match=r"class ids 0\.\.7, outside the class table 0\.\.4") as caught:
        read_mask(path, num_classes=5)
    assert caught.value.path == path
    assert read_mask(path).max() == 7  # without a class count there is nothing to check against


def test_a_colour_mask_is_an_input_error(tmp_path):
    path = write_rgb(tmp_path / "m.png", np.zeros((4, 4, 3)))
    with pytest.raises(InputError, match="single-band class-index image, got mode RGB"):
        read_mask(path, 5)


def test_geotiff_image_and_mask_keep_their_georeference(tmp_path):
    rgb16 = np.full((8, 8, 3), 65535, np.uint16)
    rgb16[0, 0] = 0
    image = read_image(write_geotiff(tmp_path / "img.tif", rgb16))
    assert image.shape == (3, 8, 8) and float(image.max()) == 1.0 and float(image.min()) == 0.0
    mask_path = write_geotiff(tmp_path / "mask.tif", np.eye(8, dtype=np.uint8) * 4)
    assert read_mask(mask_path, 5).max() == 4
    georeference = read_georeference(mask_path)
    assert georeference["crs"] == UTM_33N
    assert georeference["transform"] == pytest.approx(list(grid_transform())[:6])
    assert read_georeference(write_rgb(tmp_path / "plain.png", np.zeros((2, 2, 3)))) is None


def test_bad_geotiff_masks_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="one band"):
        read_mask(write_geotiff(tmp_path / "rgb.tif", np.zeros((4, 4, 3), np.uint8)), 5)
    with pytest.raises(InputError, match="whole class indices"):
        read_mask(write_geotiff(tmp_path / "float.tif", np.full((4, 4), 1.5, np.float32)), 5)
    path = write_geotiff(tmp_path / "cut.tif", np.zeros((64, 64), np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError) as caught:
        read_mask(path, 5)
    assert caught.value.path == path
