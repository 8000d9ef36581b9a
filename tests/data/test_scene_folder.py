import numpy as np
import pytest
import torch
from tests.fakes import make_scene_folder, write_rgb

from terrasynth.data.captions import SCENE_TEMPLATES
from terrasynth.data.scene_folder import SceneFolder
from terrasynth.errors import InputError


def test_samples_have_labels_from_sorted_class_folders(scene_folder_root):
    dataset = SceneFolder(scene_folder_root, "all")
    assert dataset.classes == ["forest", "resident", "river_lake"]
    assert len(dataset) == 12 and dataset.labels == [0] * 4 + [1] * 4 + [2] * 4
    sample = dataset[9]
    assert set(sample) == {"image", "label", "class_name", "caption", "id"}
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert (sample["label"], sample["class_name"]) == (2, "river_lake")
    assert sample["caption"] == "aerial image of a river or lake"
    assert sample["id"] == "river_lake/river_lake_01"


def test_given_classes_set_the_order(scene_folder_root):
    dataset = SceneFolder(scene_folder_root, "all", classes=["river_lake", "forest"])
    assert len(dataset) == 8 and dataset[0]["class_name"] == "river_lake" and dataset[0]["label"] == 0


def test_splits_are_disjoint_deterministic_and_cover_all(tmp_path):
    root = make_scene_folder(tmp_path, ("a", "b"), n=20, size=8)
    ids = {}
    for split in ("train", "val", "test"):
        dataset = SceneFolder(root, split, fractions=(0.5, 0.25, 0.25))
        ids[split] = [path.as_posix() for path, _ in dataset.files]
        assert ids[split] == [
            path.as_posix() for path, _ in SceneFolder(root, split, fractions=(0.5, 0.25, 0.25)).files
        ]
    every = [i for part in ids.values() for i in part]
    assert len(every) == len(set(every)) == 40


def test_caption_templates_are_chosen_per_file(scene_folder_root):
    captions = {}
    for split in ("all", "train"):
        dataset = SceneFolder(scene_folder_root, split, caption_templates=SCENE_TEMPLATES)
        captions[split] = {dataset[i]["id"]: dataset[i]["caption"] for i in range(len(dataset))}
    assert all(captions["all"][i] == caption for i, caption in captions["train"].items())
    assert len(set(captions["all"].values())) > 3


def test_hidden_and_non_image_files_are_ignored(scene_folder_root):
    (scene_folder_root / "forest" / "._forest_00.jpg").write_bytes(b"\0\5\26\7")
    (scene_folder_root / "forest" / "Thumbs.db").write_bytes(b"\0")
    (scene_folder_root / ".cache").mkdir()
    assert len(SceneFolder(scene_folder_root, "all")) == 12


def test_folder_problems_are_input_errors(tmp_path, scene_folder_root):
    with pytest.raises(InputError, match="dataset folder not found"):
        SceneFolder(tmp_path / "nowhere")
    (tmp_path / "bare").mkdir()
    with pytest.raises(InputError, match="no class folders"):
        SceneFolder(tmp_path / "bare")
    with pytest.raises(InputError, match="class folder.* missing: lava"):
        SceneFolder(scene_folder_root, classes=["forest", "lava"])
    (scene_folder_root / "empty_class").mkdir()
    with pytest.raises(InputError, match="class folder has no images") as caught:
        SceneFolder(scene_folder_root, "all")
    assert caught.value.path == scene_folder_root / "empty_class"
    with pytest.raises(ValueError, match="split must be one of"):
        SceneFolder(scene_folder_root, "training")


def test_a_truncated_jpeg_names_the_file(tmp_path):
    root = make_scene_folder(tmp_path, ("forest",), n=1, size=32)
    path = root / "forest" / "forest_00.jpg"
    path.write_bytes(path.read_bytes()[:120])
    with pytest.raises(InputError, match="cannot read image") as caught:
        SceneFolder(root, "all")[0]
    assert caught.value.path == path


def test_images_of_other_sizes_load_at_their_size(scene_folder_root):
    write_rgb(scene_folder_root / "forest" / "big.png", np.zeros((48, 40, 3)))
    dataset = SceneFolder(scene_folder_root, "all")
    assert dataset[0]["image"].shape == (3, 48, 40)
