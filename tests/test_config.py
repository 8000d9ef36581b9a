from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from terrasynth.config import config_from_dict, config_to_dict, load_config, save_config
from terrasynth.errors import InputError


@dataclass(frozen=True)
class SchedulerConfig:
    name: str = "dpmsolver++"
    steps: int = 20

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be positive, got {self.steps}")


@dataclass(frozen=True)
class ModelConfig:
    channels: tuple[int, ...] = (32, 64)
    crop: tuple[int, int] | None = None
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    note: str | None = None


def test_round_trip_through_json_gives_an_equal_config(tmp_path):
    config = ModelConfig((8, 16, 32), (64, 64), SchedulerConfig("ddim", 50), "tiny")
    save_config(config, tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data == {
        "channels": [8, 16, 32],
        "crop": [64, 64],
        "scheduler": {"name": "ddim", "steps": 50},
        "note": "tiny",
    }
    loaded = load_config(ModelConfig, tmp_path / "config.json")
    assert loaded == config
    assert isinstance(loaded.channels, tuple) and isinstance(loaded.crop, tuple)
    assert isinstance(loaded.scheduler, SchedulerConfig)
    hash(loaded)  # frozen configs stay hashable: no lists left inside


def test_missing_keys_take_defaults():
    assert config_from_dict(ModelConfig, {}) == ModelConfig()
    assert config_to_dict(ModelConfig())["scheduler"] == {"name": "dpmsolver++", "steps": 20}


def test_unknown_keys_are_rejected_with_the_file_and_the_known_keys(tmp_path):
    with pytest.raises(InputError, match="unknown ModelConfig key.*chanels") as caught:
        config_from_dict(ModelConfig, {"chanels": [8]}, tmp_path / "c.json")
    assert caught.value.path == tmp_path / "c.json"
    assert "channels" in caught.value.fix


def test_unknown_keys_in_a_nested_config_are_rejected():
    with pytest.raises(InputError, match="unknown SchedulerConfig key.*sigma"):
        config_from_dict(ModelConfig, {"scheduler": {"sigma": 1}})


def test_invalid_values_become_input_errors():
    with pytest.raises(InputError, match="steps must be positive"):
        config_from_dict(SchedulerConfig, {"steps": 0})
    with pytest.raises(InputError, match="must be a JSON object"):
        config_from_dict(SchedulerConfig, [1, 2])


def test_load_config_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match="nothing.json"):
        load_config(ModelConfig, tmp_path / "nothing.json")
