import json
import os
import stat

import pytest

from terrasynth.errors import InputError
from terrasynth.files import atomic_path, read_json, write_json_atomic, write_text_atomic


def test_atomic_path_renames_onto_the_target_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("done")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_text() == "done"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_path_leaves_no_file_when_the_block_raises(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_old_file_when_the_block_raises(tmp_path):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"step": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise KeyboardInterrupt
    assert read_json(target) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_file_gets_normal_permissions(tmp_path):
    target = tmp_path / "shared.txt"
    write_text_atomic(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_json_round_trip(tmp_path):
    data = {"names": ["a", "b"], "size": 32, "nested": {"x": 1.5}}
    write_json_atomic(tmp_path / "d.json", data)
    assert read_json(tmp_path / "d.json") == data
    assert json.loads((tmp_path / "d.json").read_text()) == data


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not valid JSON") as caught:
        read_json(bad)
    assert caught.value.path == bad


def test_a_saved_model_folder_follows_the_umask_weights_included(tmp_path):
    """diffusers writes weights 0600 through mkstemp; a model folder's files all get 0o666 less the umask, as its
    JSON does, so other users of a shared folder can read the weights too."""
    from tests.fake_models import save_tiny_model

    from terrasynth.files import _UMASK

    folder = save_tiny_model(tmp_path / "model")
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.rglob("*") if path.is_file()}
    assert any(name.endswith(".safetensors") for name in modes)
    assert set(modes.values()) == {0o666 & ~_UMASK}, modes
