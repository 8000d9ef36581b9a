"""Finding a Stable Diffusion base: a folder, a hub id already in the local cache (offline), or a clear error."""

from __future__ import annotations

import shutil

import pytest
import torch

from terrasynth.errors import InputError
from terrasynth.models.stable_diffusion import (
    controlnet_embedding_channels,
    encode_layout,
    load_stable_diffusion,
    resolve_base_model,
)


def test_hub_id_in_the_local_cache_loads_offline(tiny_sd, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--someone--tiny-sd"
    shutil.copytree(tiny_sd, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert resolve_base_model("someone/tiny-sd") == repo / "snapshots" / commit
    components = load_stable_diffusion("someone/tiny-sd")
    assert components.resolution == 32 and components.vae_scale_factor == 2


def test_folders_that_are_not_a_base_are_named(tiny_sd, tmp_path):
    with pytest.raises(InputError, match="no model_index.json"):
        resolve_base_model(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="a folder, not a file"):
        resolve_base_model(tmp_path / "weights.safetensors")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(InputError, match="no unet/ component"):
        load_stable_diffusion(broken)


def test_controlnet_embedding_reaches_latent_scale():
    assert controlnet_embedding_channels(8) == (16, 32, 96, 256)  # Stable Diffusion's
    assert controlnet_embedding_channels(2) == (16, 32)
    assert controlnet_embedding_channels(1) == (16,)


def test_layout_encodings(class_table):
    layout = torch.tensor([[[0, 2], [3, 4]]])
    colours = encode_layout(layout, class_table, "color")
    assert colours.shape == (1, 3, 2, 2) and 0 <= colours.min() and colours.max() <= 1
    expected = torch.tensor(class_table.render(layout[0]), dtype=torch.float32).permute(2, 0, 1) / 255
    assert torch.allclose(colours[0], expected)
    onehot = encode_layout(layout, class_table, "onehot")
    assert onehot.shape == (1, 5, 2, 2) and torch.equal(onehot.argmax(1), layout)
