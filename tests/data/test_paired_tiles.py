import numpy as np
import pytest
import torch
from PIL import Image
from tests.fakes import UTM_33N, make_paired_tiles, write_geotiff, write_mask_png, write_rgb

from terrasynth.data.classes import LANDCOVER_AI
from terrasynth.data.paired_tiles import PairedTiles
from terrasynth.data.transforms import RandomCrop
from terrasynth.errors import InputError


def test_samples_have_the_documented_keys_shapes_and_ranges(paired_tiles_root):
    dataset = PairedTiles(paired_tiles_root, "all")
    assert len(dataset) == 6 and dataset.ids == [f"{i:04d}" for i in range(6)]
    sample = dataset[2]
    assert set(sample) == {"image", "layout", "caption", "id"}
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["layout"].shape == (32, 32) and sample["layout"].dtype == torch.int64
    assert 0 <= int(sample["layout"].min()) and int(sample["layout"].max()) <= 4
    assert sample["caption"].startswith("aerial image: ") and sample["id"] == "0002"


def test_the_layout_is_the_mask_and_lines_up_with_the_image(paired_tiles_root):
    sample = PairedTiles(paired_tiles_root, "all")[0]
    mask = np.asarray(Image.open(paired_tiles_root / "masks" / "0000.png"))
    assert np.array_equal(sample["layout"].numpy(), mask)
    # The fake images are red where the class id is high: red = class × 63.
    assert torch.equal((sample["image"][0] * 255).round().long(), sample["layout"] * 63)


def test_splits_are_disjoint_and_cover_every_tile(tmp_path):
    root = make_paired_tiles(tmp_path, n=24, size=8)
    sizes, seen = 0, set()
    for split in ("train", "val", "test"):
        try:
            dataset = PairedTiles(root, split, block_size=1)
        except InputError as error:
            assert "is empty" in str(error)
            continue
        sizes += len(dataset)
        assert not seen & set(dataset.ids)
        seen |= set(dataset.ids)
    assert sizes == 24 == len(PairedTiles(root, "all"))


def test_an_empty_split_is_an_input_error(paired_tiles_root):
    # Six consecutive ids form one block, so two of the three splits are empty.
    lengths = []
    for split in ("train", "val", "test"):
        try:
            lengths.append(len(PairedTiles(paired_tiles_root, split)))
        except InputError as error:
            assert "split" in str(error) and "split='all'" in error.fix
    assert lengths == [6]


def test_transforms_and_metadata_are_applied(paired_tiles_root):
    dataset = PairedTiles(paired_tiles_root, "all", transforms=RandomCrop(16), metadata={"season": "summer"})
    sample = dataset[0]
    assert sample["image"].shape == (3, 16, 16) and sample["layout"].shape == (16, 16)
    assert sample["caption"].endswith(", in summer")


def test_batches_collate(paired_tiles_root):
    loader = torch.utils.data.DataLoader(PairedTiles(paired_tiles_root, "all"), batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["layout"].shape == (4, 32, 32)
    assert len(batch["caption"]) == 4


def test_jpeg_images_and_a_given_class_table(tmp_path):
    root = make_paired_tiles(tmp_path, n=2, size=16, image_suffix=".jpg", mask_mode="L")
    (root / "classes.json").unlink()
    dataset = PairedTiles(root, "all", class_table=LANDCOVER_AI)
    assert dataset[1]["image"].shape == (3, 16, 16) and dataset.class_table is LANDCOVER_AI


def test_georeferenced_tiles_carry_their_georeference(tmp_path):
    root = make_paired_tiles(tmp_path, n=1, size=8)
    write_geotiff(root / "masks" / "0000.tif", np.zeros((8, 8), np.uint8))
    (root / "masks" / "0000.png").unlink()
    sample = PairedTiles(root, "all")[0]
    assert sample["georeference"]["crs"] == UTM_33N and len(sample["georeference"]["transform"]) == 6


def test_missing_classes_json_is_an_input_error(paired_tiles_root):
    (paired_tiles_root / "classes.json").unlink()
    with pytest.raises(InputError, match="class table not found") as caught:
        PairedTiles(paired_tiles_root, "all")
    assert caught.value.path == paired_tiles_root / "classes.json"


def test_class_ids_out_of_range_name_the_mask(paired_tiles_root):
    bad = write_mask_png(paired_tiles_root / "masks" / "0003.png", np.full((32, 32), 6, np.uint8), "L")
    dataset = PairedTiles(paired_tiles_root, "all")
    with pytest.raises(InputError, match="class ids 6..6, outside the class table 0..4") as caught:
        dataset[3]
    assert caught.value.path == bad


def test_image_and_mask_of_different_sizes_name_the_mask(paired_tiles_root):
    bad = write_mask_png(paired_tiles_root / "masks" / "0001.png", np.zeros((16, 32), np.uint8))
    with pytest.raises(InputError, match=r"mask is \(16, 32\) but image 0001.png is \(32, 32\)") as caught:
        PairedTiles(paired_tiles_root, "all")[1]
    assert caught.value.path == bad


def test_a_truncated_image_names_the_image(paired_tiles_root):
    path = paired_tiles_root / "images" / "0004.png"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="cannot read image") as caught:
        PairedTiles(paired_tiles_root, "all")[4]
    assert caught.value.path == path


def test_folder_problems_are_input_errors(tmp_path, paired_tiles_root):
    with pytest.raises(InputError, match="dataset folder not found"):
        PairedTiles(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    (paired_tiles_root / "classes.json").rename(empty / "classes.json")
    with pytest.raises(InputError, match="no image files") as caught:
        PairedTiles(empty, "all")
    assert caught.value.path == empty / "images"


def test_an_image_without_a_mask_is_an_input_error(paired_tiles_root):
    write_rgb(paired_tiles_root / "images" / "0099.png", np.zeros((32, 32, 3)))
    with pytest.raises(InputError, match="no mask for 1 image.*0099.png"):
        PairedTiles(paired_tiles_root, "all")


def test_two_images_with_one_id_are_an_input_error(paired_tiles_root):
    write_rgb(paired_tiles_root / "images" / "0002.jpg", np.zeros((32, 32, 3)))
    with pytest.raises(InputError, match="several files share the id '0002'"):
        PairedTiles(paired_tiles_root, "all")
