import random
import re

import torch

from terrasynth.data.captions import (
    SCENE_TEMPLATES,
    caption_for_scene,
    caption_from_layout,
    random_metadata,
    scene_paraphrases,
)
from terrasynth.data.classes import LANDCOVER_AI


def layout_with(shares: dict[int, int], total: int = 200) -> torch.Tensor:
    """A 1×total layout with ``count`` pixels of each class id (the rest background)."""
    values = [c for c, n in shares.items() for _ in range(n)]
    return torch.tensor(values + [0] * (total - len(values))).view(1, total)


def test_majority_class_comes_first_with_its_percentage():
    caption = caption_from_layout(layout_with({2: 110, 3: 60, 0: 20, 4: 8, 1: 2}), LANDCOVER_AI)
    assert caption.startswith("aerial image: 55 % woodland, 30 % water, 10 % background")
    assert caption.endswith(", with road, building")


def test_minor_classes_follow_with_and_tiny_ones_are_left_out():
    caption = caption_from_layout(layout_with({3: 4, 1: 19}, total=1000), LANDCOVER_AI)
    majors, minors = caption.split(", with ")
    assert re.fullmatch(r"aerial image: \d+ % background", majors)
    assert minors.split(", ") == ["building"]  # water covers 0.4 %, under the 0.5 % floor


def test_percentages_are_rounded_to_five():
    caption = caption_from_layout(layout_with({3: 63, 2: 137}), LANDCOVER_AI)
    assert caption == "aerial image: 70 % woodland, 30 % water"


def test_no_data_values_are_not_counted():
    layout = layout_with({3: 100, 255: 100})
    assert caption_from_layout(layout, LANDCOVER_AI) == "aerial image: 100 % water"


def test_metadata_words_are_appended():
    caption = caption_from_layout(
        layout_with({3: 200}),
        LANDCOVER_AI,
        {"season": "winter", "time_of_day": "noon", "place": "Poland", "gsd_m": 0.25},
    )
    assert caption == "aerial image: 100 % water, in winter, at noon, over Poland, 25 cm per pixel"
    assert caption_for_scene("forest", metadata={"gsd_m": 10}).endswith("10 m per pixel")


def test_scene_captions_use_readable_class_words():
    assert caption_for_scene("forest") == "aerial image of a forest"
    assert caption_for_scene("river_lake") == "aerial image of a river or lake"
    assert caption_for_scene("AnnualCrop") == "aerial image of annual crop fields"
    assert caption_for_scene("solar_farm") == "aerial image of solar farm"
    paraphrases = scene_paraphrases("forest")
    assert len(set(paraphrases)) == len(SCENE_TEMPLATES) and all("a forest" in p for p in paraphrases)


def test_random_metadata_is_seeded():
    assert random_metadata(random.Random(3)) == random_metadata(random.Random(3))
