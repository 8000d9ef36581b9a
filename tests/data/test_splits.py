import pytest

from terrasynth.data.splits import SPLITS, block_key, grouped_split, split_of

IDS = [f"{i:04d}" for i in range(640)]


def splits_of(ids, **kwargs) -> dict[str, list[str]]:
    return {name: grouped_split(ids, name, **kwargs) for name in SPLITS}


def test_splits_are_deterministic_disjoint_and_cover_all_ids():
    parts = splits_of(IDS)
    assert parts == splits_of(IDS)
    seen = [t for part in parts.values() for t in part]
    assert sorted(seen) == IDS  # every id once: disjoint and complete
    assert grouped_split(IDS, "all") == IDS


def test_a_block_of_consecutive_ids_stays_in_one_split():
    owner = {t: name for name, part in splits_of(IDS, block_size=32).items() for t in part}
    for start in range(0, len(IDS), 32):
        assert len({owner[t] for t in IDS[start : start + 32]}) == 1


def test_a_tiles_split_does_not_change_when_other_ids_are_removed():
    full = {t: name for name, part in splits_of(IDS, block_size=4).items() for t in part}
    kept = IDS[::7]
    for name, part in splits_of(kept, block_size=4).items():
        assert all(full[t] == name for t in part)


def test_split_sizes_follow_the_fractions_over_many_blocks():
    ids = [f"{i:05d}" for i in range(4000)]
    sizes = {name: len(part) for name, part in splits_of(ids, block_size=1).items()}
    assert sizes["train"] / 4000 == pytest.approx(0.8, abs=0.04)
    assert sizes["val"] / 4000 == pytest.approx(0.1, abs=0.03)
    sizes = {name: len(part) for name, part in splits_of(ids, block_size=1, fractions=(0.5, 0.5, 0.0)).items()}
    assert sizes["test"] == 0 and sizes["train"] + sizes["val"] == 4000


def test_block_key_keeps_the_scene_and_groups_the_last_number():
    assert block_key("0031") == block_key("0000") != block_key("0032")
    assert block_key("M-33-7-A_5") != block_key("M-33-8-A_5")  # other scene, same tile number
    assert block_key("scene2_0010", 32) == block_key("scene2_0031", 32)
    assert block_key("no_number") == "no_number"


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="split must be one of"):
        grouped_split(IDS, "training")
    with pytest.raises(ValueError, match="summing to 1"):
        grouped_split(IDS, "train", fractions=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="block_size"):
        block_key("0001", 0)
    assert split_of("x") in SPLITS
