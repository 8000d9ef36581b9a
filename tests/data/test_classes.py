import json

import numpy as np
import pytest
import torch
from tests.fakes import LANDCOVER_CLASSES, write_classes_json

from terrasynth.data.classes import LANDCOVER_AI, ClassTable
from terrasynth.errors import InputError


def test_reads_the_shared_data_format(class_table):
    assert class_table.names == ("background", "building", "woodland", "water", "road")
    assert class_table.colors == ((0, 0, 0), (45, 45, 45), (74, 74, 74), (176, 176, 176), (255, 255, 255))
    assert class_table == LANDCOVER_AI
    assert len(class_table) == 5 and class_table.index("water") == 3


def test_entries_may_come_in_any_order_and_carry_extra_keys(tmp_path):
    entries = [dict(e, pixel_fraction=0.2) for e in reversed(LANDCOVER_CLASSES)]
    table = ClassTable.from_json(write_classes_json(tmp_path, entries))
    assert table.names == LANDCOVER_AI.names


def test_a_bare_list_of_names_works(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(["field", "forest"]))
    table = ClassTable.from_json(path)
    assert table.names == ("field", "forest") and len(table.colors) == 2


def test_json_round_trip_keeps_names_and_both_palettes(tmp_path):
    table = ClassTable(("a", "b", "c"), ((1, 2, 3), (4, 5, 6), (7, 8, 9)), ((9, 9, 9), (8, 8, 8), (7, 7, 7)))
    path = tmp_path / "classes.json"
    path.write_text(table.to_json())
    assert ClassTable.from_json(path) == table
    assert ClassTable.from_dict(json.loads(table.to_json())) == table


def test_display_colours_default_to_known_names_then_tab10():
    table = ClassTable(("water", "mystery"), ((0, 0, 0), (1, 1, 1)))
    assert table.display_colors[0] == (38, 110, 200)
    assert len(set(table.display_colors)) == 2


@pytest.mark.parametrize(
    "entries, problem",
    [
        ([], "no class list"),
        ([{"index": 0, "name": "a"}, {"index": 2, "name": "b"}], "without gaps"),
        ([{"index": 0, "name": "a"}, {"index": 1, "name": "a"}], "unique"),
        ([{"index": 0, "name": "a", "rgb": [0, 0]}], "r, g, b"),
        ([{"index": 0, "name": "a", "rgb": [0, 0, 300]}], "0..255"),
        ([{"index": 0}], "malformed"),
        ([7], "object or a name"),
    ],
)
def test_malformed_class_tables_are_input_errors_naming_the_file(tmp_path, entries, problem):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"classes": entries}))
    with pytest.raises(InputError, match=problem) as caught:
        ClassTable.from_json(path)
    assert caught.value.path == path


def test_missing_class_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        ClassTable.from_json(tmp_path / "classes.json")


def test_unknown_class_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="background, building"):
        LANDCOVER_AI.index("lava")


def test_render_colours_each_class():
    layout = torch.tensor([[0, 1], [3, 4]])
    rgb = LANDCOVER_AI.render(layout)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 0]) == LANDCOVER_AI.display_colors[3]
    assert np.array_equal(LANDCOVER_AI.render(layout.numpy()), rgb)
