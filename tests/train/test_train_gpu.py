"""tools/train_gpu.py on tiny fake data for 2 steps per stage (--smoke): every stage runs on the CPU, a run
stopped after a stage resumes at the next one, and the model folder holds fp16 safetensors + JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from safetensors import safe_open
from tests.fake_models import SCENE_CLASSES
from tests.fakes import make_paired_tiles, make_scene_folder

from terrasynth.models.embedded import EmbeddedDiffusionModel

ROOT = Path(__file__).resolve().parents[2]


def load_tool():
    spec = importlib.util.spec_from_file_location("train_gpu", ROOT / "tools" / "train_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_configs_are_valid_training_configs():
    from terrasynth.config import config_from_dict
    from terrasynth.train.autoencoder import AutoencoderTrainConfig
    from terrasynth.train.diffusion import DiffusionTrainConfig

    autoencoder = config_from_dict(
        AutoencoderTrainConfig, json.loads((ROOT / "configs/gpu/autoencoder.json").read_text())
    )
    diffusion = config_from_dict(DiffusionTrainConfig, json.loads((ROOT / "configs/gpu/diffusion.json").read_text()))
    # the denoiser's model is built for the autoencoder the first stage trains, and both are larger than shipped
    assert diffusion.model.autoencoder == autoencoder.autoencoder
    assert autoencoder.autoencoder.block_out_channels == (64, 128, 256)
    assert diffusion.max_steps > 2 * 5000 // 4 and diffusion.crop is None
    # the full-size networks build and run (the smoke run below trains narrower ones)
    import torch

    vae = diffusion.model.autoencoder.build()
    assert 10e6 < sum(p.numel() for p in vae.parameters()) < 14e6
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
        assert vae.decode(latents).sample.shape == (1, 3, 32, 32)
    unet = diffusion.model.denoiser.build(4 + diffusion.model.num_layout_channels, 4)
    assert 15e6 < sum(p.numel() for p in unet.parameters()) < 16e6  # the shipped denoiser's size


def test_smoke_run_resumes_after_a_stop_and_writes_fp16_weights(tmp_path):
    tool = load_tool()
    pairs = make_paired_tiles(tmp_path / "pairs", n=6, size=32)
    scenes = make_scene_folder(tmp_path / "scenes", SCENE_CLASSES, n=3, size=32)
    run, out = tmp_path / "run", tmp_path / "model"
    argv = ["--out", str(out), "--run", str(run), "--paired", str(pairs), "--scenes", str(scenes)]
    argv += ["--resolution", "32", "--crop", "32", "--smoke"]
    # "killed" after the autoencoder: the rerun skips it and encodes, trains and exports from there
    tool.main([*argv, "--stop-after", "autoencoder"])
    assert (run / "autoencoder.done").exists() and not (run / "latents.done").exists() and not out.exists()
    autoencoder_weights = next((run / "autoencoder" / "autoencoder").glob("*.safetensors"))
    stamp = autoencoder_weights.stat().st_mtime_ns
    tool.main([*argv, "--stop-after", "latents"])
    cache = run / "diffusion" / "latent-cache.safetensors"
    cache_stamp = cache.stat().st_mtime_ns
    tool.main(argv)
    assert autoencoder_weights.stat().st_mtime_ns == stamp  # not retrained
    assert cache.stat().st_mtime_ns == cache_stamp  # the denoiser read the cache encoded by the latents stage
    assert all((run / f"{stage}.done").exists() for stage in tool.STAGES)
    # the denoiser trained for the smoke step count
    state = json.loads((sorted((run / "diffusion").glob("checkpoint-*"))[-1] / "state.json").read_text())
    assert state["step"] == tool.SMOKE_STEPS
    model = EmbeddedDiffusionModel.from_pretrained(out)
    assert model.mean_prior is not None and model.config.sampling_steps == 13
    weights = sorted(out.rglob("*.safetensors"))
    assert weights and (out / "terrasynth_model.json").is_file()
    with safe_open(str(next(w for w in weights if w.parent.name == "unet")), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype.itemsize == 2
    assert not out.with_name(out.name + ".partial").exists()


def test_refuses_a_full_run_without_a_gpu(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        load_tool().main(["--out", str(tmp_path / "model"), "--run", str(tmp_path / "run")])
