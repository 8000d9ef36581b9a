"""The loaders on the real data in ../shared/data (skipped where it is absent)."""

from pathlib import Path

import pytest
import torch

from terrasynth.data.paired_tiles import PairedTiles
from terrasynth.data.scene_folder import SceneFolder

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.slow


def folder(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def test_landcoverai_pairs_split_into_disjoint_parts_that_sum_to_the_total():
    root = folder("landcoverai_pairs")
    everything = PairedTiles(root, "all")
    assert len(everything) == len([p for p in (root / "images").iterdir() if not p.name.startswith(".")])
    parts = {split: PairedTiles(root, split) for split in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(everything)
    ids = [i for p in parts.values() for i in p.ids]
    assert len(ids) == len(set(ids))
    sample = parts["val"][0]
    assert sample["image"].shape == (3, 256, 256) and sample["layout"].shape == (256, 256)
    assert sample["layout"].dtype == torch.int64 and int(sample["layout"].max()) < len(everything.class_table)
    assert everything.class_table.names == ("background", "building", "woodland", "water", "road")


def test_rsscn7_splits_into_disjoint_parts_that_sum_to_the_total():
    root = folder("rsscn7")
    everything = SceneFolder(root, "all")
    assert everything.classes == sorted(["grass", "field", "industry", "river_lake", "forest", "resident", "parking"])
    parts = {split: SceneFolder(root, split) for split in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(everything)
    ids = [path for p in parts.values() for path, _ in p.files]
    assert len(ids) == len(set(ids))
    for part in parts.values():
        assert set(part.labels) == set(range(7))  # every class in every split
    sample = parts["test"][0]
    assert sample["image"].shape == (3, 256, 256) and sample["caption"].startswith("aerial image of")
