"""Each fine-tuning method on a tiny Stable Diffusion: a few CPU steps give a finite loss and changed weights, the
saved folder loads in plain diffusers and generates, and a killed run resumes exactly."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from tests.fake_sd import TINY_RESOLUTION
from tests.fakes import make_scene_folder

from terrasynth.errors import InputError
from terrasynth.train.finetune import FinetuneConfig, FinetuneData, finetune
from terrasynth.train.run import read_metrics


def config_for(method: str, base, data, out, **changes) -> FinetuneConfig:
    settings = {"resolution": TINY_RESOLUTION, "max_steps": 3, "checkpoint_every": 2, "log_every": 1}
    settings.update(learning_rate=1e-3, **changes)
    return FinetuneConfig(method=method, base=str(base), data=(str(data),), output_dir=str(out), **settings)


def check_losses(run_dir, steps: int) -> None:
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    assert all(math.isfinite(m["last_loss"]) and m["last_loss"] > 0 for m in metrics)


def generate(pipe, prompt: str = "aerial image of a forest", **kwargs) -> torch.Tensor:
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        prompt,
        num_inference_steps=2,
        height=TINY_RESOLUTION,
        width=TINY_RESOLUTION,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **kwargs,
    ).images
    assert images.shape == (1, 3, TINY_RESOLUTION, TINY_RESOLUTION)
    assert torch.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    return images


def test_text2img_with_accumulation_checkpointing_and_validation(tiny_sd, pairs, tmp_path):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    config = config_for(
        "text2img",
        tiny_sd,
        pairs,
        tmp_path / "run",
        gradient_accumulation_steps=2,
        gradient_checkpointing=True,
        validate_every=3,
        validation_steps=2,
    )
    out = finetune(config, progress=False)
    check_losses(config.output_dir, 3)
    assert (tmp_path / "run" / "validation" / "step-000003.png").is_file()
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    before = UNet2DConditionModel.from_pretrained(tiny_sd / "unet").state_dict()
    after = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    info = json.loads((out / "terrasynth_finetune.json").read_text())
    assert info["method"] == "text2img" and info["steps"] == 3
    generate(StableDiffusionPipeline.from_pretrained(out, use_safetensors=True))


def test_dreambooth_with_prior_preservation(tiny_sd, pairs, tmp_path):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    config = config_for(
        "dreambooth",
        tiny_sd,
        pairs,
        tmp_path / "run",
        prompt="aerial image of sks site",
        num_class_images=2,
        class_image_steps=2,
    )
    out = finetune(config, progress=False)
    check_losses(config.output_dir, 3)
    assert len(list((tmp_path / "run" / "class-images").glob("*.png"))) == 2
    before = UNet2DConditionModel.from_pretrained(tiny_sd / "unet").state_dict()
    after = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    generate(StableDiffusionPipeline.from_pretrained(out, use_safetensors=True), "aerial image of sks site")


def test_lora_saves_weights_that_load_lora_weights_reads(tiny_sd, pairs, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = finetune(config_for("lora", tiny_sd, pairs, tmp_path / "run", lora_rank=2), progress=False)
    check_losses(tmp_path / "run", 3)
    assert sorted(p.name for p in out.iterdir()) == ["pytorch_lora_weights.safetensors", "terrasynth_finetune.json"]
    weights = load_file(out / "pytorch_lora_weights.safetensors")
    ups = [v for k, v in weights.items() if "lora_B" in k or "lora.up" in k]
    assert ups and any(v.abs().sum() > 0 for v in ups)  # B starts at zero: training moved it
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, use_safetensors=True)
    plain = generate(pipe)
    pipe.load_lora_weights(out)
    adapted = generate(pipe)
    assert not torch.equal(plain, adapted)


def test_textual_inversion_token_changes_only_its_prompts(tiny_sd, pairs, tmp_path):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    out = finetune(
        config_for("textual-inversion", tiny_sd, pairs, tmp_path / "run", placeholder_token="<site>"),
        progress=False,
    )
    check_losses(tmp_path / "run", 3)
    learned = load_file(out / "learned_embeds.safetensors")
    assert list(learned) == ["<site>"] and learned["<site>"].shape == (1, 16)
    # Only the new row trained: every other row of the checkpoint's embedding matrix is the base's.
    base_rows = CLIPTextModel.from_pretrained(tiny_sd / "text_encoder").get_input_embeddings().weight
    saved = next(iter(load_file(tmp_path / "run" / "checkpoint-3" / "text_encoder.safetensors").values()))
    assert saved.shape[0] == base_rows.shape[0] + 1
    assert torch.equal(saved[:-1], base_rows.detach())

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, use_safetensors=True)

    def embed(prompt):
        return pipe.encode_prompt(prompt, "cpu", 1, False)[0]

    without_token = embed("aerial image of a forest in winter")
    with_initializer = embed("aerial image of site")
    pipe.load_textual_inversion(out)
    assert torch.equal(embed("aerial image of a forest in winter"), without_token)
    assert not torch.allclose(embed("aerial image of <site>"), with_initializer)
    generate(pipe, "aerial image of <site>")


@pytest.mark.parametrize("encoding", ["onehot"])
def test_controlnet_on_layouts(tiny_sd, pairs, tmp_path, encoding):
    from diffusers import StableDiffusionControlNetPipeline

    out = finetune(config_for("controlnet", tiny_sd, pairs, tmp_path / "run", layout_encoding=encoding), progress=False)
    check_losses(tmp_path / "run", 3)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(out, use_safetensors=True)
    assert pipe.controlnet.config.conditioning_channels == 5  # one channel per LandCover.ai class
    zero_convs = [p for n, p in pipe.controlnet.named_parameters() if n.startswith("controlnet_down_blocks")]
    assert any(p.abs().sum() > 0 for p in zero_convs)  # zero-initialised, moved by training
    assert json.loads((out / "classes.json").read_text())["classes"][2]["name"] == "woodland"
    layout = torch.zeros(1, 5, TINY_RESOLUTION, TINY_RESOLUTION)
    layout[:, 2] = 1  # all woodland
    generate(pipe, image=layout)


def test_resume_continues_at_the_right_step(tiny_sd, pairs, tmp_path):
    whole = config_for("lora", tiny_sd, pairs, tmp_path / "whole", max_steps=4, checkpoint_every=1, keep_checkpoints=2)
    finetune(whole, progress=False)
    killed = dataclasses.replace(whole, output_dir=str(tmp_path / "killed"), max_steps=2)
    finetune(killed, progress=False)
    with pytest.raises(InputError, match="already holds checkpoints"):
        finetune(dataclasses.replace(killed, max_steps=4), progress=False)
    out = finetune(dataclasses.replace(killed, max_steps=4), resume="latest", progress=False)
    assert [m["step"] for m in read_metrics(tmp_path / "killed")] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    resumed = load_file(out / "pytorch_lora_weights.safetensors")
    uninterrupted = load_file(tmp_path / "whole" / "model" / "pytorch_lora_weights.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_captions_carry_metadata_words_and_the_token(pairs, tmp_path):
    scenes = make_scene_folder(tmp_path / "scenes", ("forest", "river_lake"), n=2, size=32)
    metadata = {"season": "winter", "time_of_day": "morning", "place": "Kraków"}
    import random

    rng = random.Random(0)
    text = FinetuneConfig(method="text2img", base="x", data=(str(pairs), str(scenes)), metadata=metadata, split="all")
    data = FinetuneData(text, 16, needs_layouts=False)
    captions = {data.example(i, rng)["caption"] for i in range(len(data))}
    assert all(c.endswith("in winter, in the morning, over Kraków") for c in captions)
    assert any(c.startswith("aerial image:") for c in captions)  # layout shares of paired tiles
    assert any("forest" in c for c in captions)  # scene class
    example = data.example(0, rng)
    assert example["image"].shape == (3, 16, 16) and example["layout"].shape == (16, 16)

    inversion = dataclasses.replace(text, method="textual-inversion", data=(str(scenes),))
    ti_data = FinetuneData(inversion, 32, needs_layouts=False)
    assert all("<site>" in ti_data.example(i, rng)["caption"] for i in range(len(ti_data)))
    with pytest.raises(InputError, match="ControlNet needs paired tiles"):
        FinetuneData(dataclasses.replace(text, method="controlnet"), 32, needs_layouts=True)


def test_config_checks_and_json_round_trip(tmp_path):
    from terrasynth.config import load_config, save_config

    with pytest.raises(ValueError, match="instance prompt"):
        FinetuneConfig(method="dreambooth", base="b", data=("d",))
    with pytest.raises(ValueError, match="method must be one of"):
        FinetuneConfig(method="hypernetwork", base="b", data=("d",))
    config = FinetuneConfig(method="lora", base="b", data=("d",), metadata={"season": "summer"})
    save_config(config, tmp_path / "config.json")
    assert load_config(FinetuneConfig, tmp_path / "config.json") == config
