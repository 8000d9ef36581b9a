"""A killed training run resumes at the right step, and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file
from tests.fake_models import SCENE_CLASSES, TINY_AUTOENCODER, save_tiny_autoencoder, tiny_model_config
from tests.fakes import make_paired_tiles, make_scene_folder

from terrasynth.train.autoencoder import AutoencoderTrainConfig, train_autoencoder
from terrasynth.train.checkpoints import list_checkpoints
from terrasynth.train.diffusion import DiffusionTrainConfig, train_diffusion
from terrasynth.train.run import read_metrics


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    pairs = make_paired_tiles(root / "pairs", n=6, size=32)
    scenes = make_scene_folder(root / "scenes", SCENE_CLASSES, n=4, size=32)
    autoencoder = save_tiny_autoencoder(root / "autoencoder")
    return pairs, scenes, autoencoder


def diffusion_config(datasets, output_dir, max_steps: int) -> DiffusionTrainConfig:
    pairs, scenes, autoencoder = datasets
    # Class conditioning: the scene label path without loading the text encoder.
    model = tiny_model_config(conditioning="class", scene_classes=SCENE_CLASSES)
    return DiffusionTrainConfig(
        paired_roots=(str(pairs),),
        scene_roots=(str(scenes),),
        output_dir=str(output_dir),
        model=model,
        autoencoder_path=str(autoencoder),
        resolution=32,
        batch_size=3,
        warmup_steps=3,
        max_steps=max_steps,
        checkpoint_every=2,
        keep_checkpoints=2,
        validate_every=0,
        log_every=1,
        seed=7,
        drop_prompt=0.3,
        drop_layout=0.3,
    )


def weights(checkpoint, name: str) -> dict:
    return load_file(checkpoint / f"{name}.safetensors")


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k].shape == b[k].shape and bool((a[k] == b[k]).all()))]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_diffusion_resume_is_exact(datasets, tmp_path):
    """Killed after step 5 (its last checkpoint, at 5, never completed): resuming from checkpoint-4 reaches
    step 6 with the same weights, EMA and optimizer state as a run that was never interrupted."""
    straight = tmp_path / "straight"
    train_diffusion(diffusion_config(datasets, straight, 6), progress=False)

    killed = tmp_path / "killed"
    train_diffusion(diffusion_config(datasets, killed, 5), progress=False)
    (killed / "checkpoint-5" / "state.json").unlink()  # as if killed while writing step 5's checkpoint
    assert list_checkpoints(killed)[-1].name == "checkpoint-4"
    model_dir = train_diffusion(diffusion_config(datasets, killed, 6), resume="latest", progress=False)

    assert list_checkpoints(killed)[-1].name == "checkpoint-6"
    for name in ("model", "ema", "optimizer"):
        assert_same_tensors(weights(killed / "checkpoint-6", name), weights(straight / "checkpoint-6", name))
    for part in ("unet", "condition"):
        exported = next((model_dir / part).glob("*.safetensors"))
        assert_same_tensors(load_file(exported), load_file(next((straight / "model" / part).glob("*.safetensors"))))
    steps = [record["step"] for record in read_metrics(killed)]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 5, logged before the kill, is not duplicated
    assert [record["step"] for record in read_metrics(straight)] == steps


def test_diffusion_resume_latest_without_checkpoint_starts_at_zero(datasets, tmp_path):
    train_diffusion(diffusion_config(datasets, tmp_path / "run", 2), resume="latest", progress=False)
    assert [record["step"] for record in read_metrics(tmp_path / "run")] == [1, 2]


def test_diffusion_resume_from_final_checkpoint_does_no_more_steps(datasets, tmp_path):
    run = tmp_path / "run"
    train_diffusion(diffusion_config(datasets, run, 2), progress=False)
    before = weights(run / "checkpoint-2", "model")
    train_diffusion(diffusion_config(datasets, run, 2), resume="latest", progress=False)
    assert_same_tensors(weights(run / "checkpoint-2", "model"), before)
    assert [record["step"] for record in read_metrics(run)] == [1, 2]


def autoencoder_config(datasets, output_dir, max_steps: int) -> AutoencoderTrainConfig:
    pairs, scenes, _ = datasets
    return AutoencoderTrainConfig(
        paired_roots=(str(pairs),),
        scene_roots=(str(scenes),),
        output_dir=str(output_dir),
        autoencoder=TINY_AUTOENCODER,
        crop=32,
        batch_size=4,
        max_steps=max_steps,
        checkpoint_every=2,
        keep_checkpoints=2,
        validate_every=100,
        log_every=1,
        adversarial_start=2,
        seed=3,
    )


def test_autoencoder_resume_continues_at_the_right_step_and_is_exact(datasets, tmp_path):
    """15 training tiles in batches of 4: 3 batches an epoch, so step 4 resumes in the middle of epoch 2.
    The discriminator (from step 2) and its optimizer resume too."""
    straight = tmp_path / "straight"
    train_autoencoder(autoencoder_config(datasets, straight, 5), progress=False)

    killed = tmp_path / "killed"
    train_autoencoder(autoencoder_config(datasets, killed, 4), progress=False)
    shutil.rmtree(killed / "autoencoder")
    out = train_autoencoder(autoencoder_config(datasets, killed, 5), resume="latest", progress=False)

    assert (out / "config.json").is_file()
    assert [p.name for p in list_checkpoints(killed)] == ["checkpoint-4", "checkpoint-5"]
    assert [r["step"] for r in read_metrics(killed) if "l1" in r] == [1, 2, 3, 4, 5]
    for name in ("vae", "discriminator", "optimizer", "discriminator-optimizer"):
        assert_same_tensors(weights(killed / "checkpoint-5", name), weights(straight / "checkpoint-5", name))
