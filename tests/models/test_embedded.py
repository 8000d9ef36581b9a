"""The embedded model: save → load round trips, refusing pickles, layout channels, condition, config."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil

import pytest
import torch
from tests.fake_models import SCENE_CLASSES, save_tiny_model, tiny_model, tiny_model_config

from terrasynth.config import config_to_dict, load_config, save_config
from terrasynth.errors import InputError
from terrasynth.models.embedded import (
    MODEL_CONFIG_NAME,
    ConditionEncoder,
    EmbeddedDiffusionModel,
    EmbeddedModelConfig,
    layout_to_channels,
    model_fingerprint,
)


def model_outputs(model: EmbeddedDiffusionModel, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's prediction for a fixed noisy latent, layout and prompt embedding, and a decoded image."""
    generator = torch.Generator().manual_seed(seed)
    noisy = torch.randn(2, model.config.image_channels, 8, 8, generator=generator)
    layout = torch.randint(0, 5, (2, 32, 32), generator=generator)
    embeds = torch.randn(2, model.config.text_dim, generator=generator)
    with torch.no_grad():
        condition = model.condition(2, text_embeds=embeds, keep=torch.tensor([True, False]))
        prediction = model.predict(noisy, torch.tensor([10, 900]), model.layout_channels(layout, 2, (8, 8)), condition)
        image = model.decode_latents(noisy)
    return prediction, image


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, its saved folder): the tiny text-conditioned latent model, untrained."""
    folder = tmp_path_factory.mktemp("models") / "tiny"
    model = tiny_model(seed=3)
    model.save_pretrained(folder)
    return model, folder


def test_save_load_round_trip_gives_identical_outputs(saved):
    model, folder = saved
    loaded = EmbeddedDiffusionModel.from_pretrained(folder).eval()
    assert loaded.config == model.config
    for before, after in zip(model_outputs(model), model_outputs(loaded), strict=True):
        assert torch.equal(before, after)
    assert loaded.scaling_factor == model.scaling_factor


def test_saved_folder_layout(saved):
    _, folder = saved
    assert (folder / MODEL_CONFIG_NAME).is_file()
    for part in ("unet", "condition", "vae"):
        assert list((folder / part).glob("*.safetensors")), part
        assert not list((folder / part).glob("*.bin")), part
    assert (folder / "scheduler" / "scheduler_config.json").is_file()
    assert not list(folder.parent.glob(".*partial"))  # the staging folder was renamed into place


def test_resave_replaces_the_folder(saved, tmp_path):
    model, _ = saved
    folder = tmp_path / "model"
    save_tiny_model(folder, seed=0)
    (folder / "stale.txt").write_text("from an older save")
    model.save_pretrained(folder)
    assert not (folder / "stale.txt").exists()
    assert torch.equal(model_outputs(EmbeddedDiffusionModel.from_pretrained(folder))[0], model_outputs(model)[0])


def test_a_resaved_model_does_not_record_where_it_was_loaded_from(saved, tmp_path):
    _, folder = saved
    loaded = EmbeddedDiffusionModel.from_pretrained(folder)  # diffusers notes the source folder of each part
    for dtype in (None, torch.float16):
        out = tmp_path / f"resaved-{dtype}"
        loaded.save_pretrained(out, dtype=dtype)
        for part in ("unet", "condition", "vae"):
            config = json.loads((out / part / "config.json").read_text())
            assert "_name_or_path" not in config, part
            assert config["_class_name"]  # the rest of diffusers' record stays
    # The float32 copy still loads to the same model.
    assert torch.equal(
        model_outputs(EmbeddedDiffusionModel.from_pretrained(tmp_path / "resaved-None"))[0], model_outputs(loaded)[0]
    )


def test_fp16_save_loads_and_stays_close(saved, tmp_path):
    model, _ = saved
    folder = tmp_path / "half"
    model.save_pretrained(folder, dtype=torch.float16)
    full_size = sum(p.stat().st_size for p in saved[1].rglob("*.safetensors"))
    half_size = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    assert half_size < 0.6 * full_size
    loaded = EmbeddedDiffusionModel.from_pretrained(folder).eval()  # float32 by default
    assert next(loaded.unet.parameters()).dtype == torch.float32
    assert next(model.unet.parameters()).dtype == torch.float32  # saving in fp16 left the model alone
    for before, after in zip(model_outputs(model), model_outputs(loaded), strict=True):
        assert torch.allclose(before, after, atol=2e-2)


def test_pixel_model_round_trip(tmp_path):
    model = tiny_model(autoencoder=None)
    assert model.vae is None and model.scaling_factor == 1.0
    model.save_pretrained(tmp_path / "pixels")
    assert not (tmp_path / "pixels" / "vae").exists()
    loaded = EmbeddedDiffusionModel.from_pretrained(tmp_path / "pixels")
    assert loaded.vae is None
    images = torch.rand(1, 3, 8, 8)
    assert torch.allclose(loaded.decode_latents(loaded.encode_images(images)), images, atol=1e-6)


@pytest.mark.parametrize("part", ["unet", "condition", "vae"])
def test_missing_weights_raise_input_error_naming_the_folder(saved, tmp_path, part):
    folder = tmp_path / "model"
    shutil.copytree(saved[1], folder)
    for weights in (folder / part).glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(InputError, match="no safetensors weights") as error:
        EmbeddedDiffusionModel.from_pretrained(folder)
    assert error.value.path == folder / part
    assert str(folder / part) in str(error.value)


class _Tripwire:
    """Unpickling this touches a marker file: proof that a loader ran pickle."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_bin_weights_are_refused_not_unpickled(saved, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved[1], folder)
    marker = tmp_path / "unpickled"
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Tripwire(marker)))
    with pytest.raises(InputError, match="pickled weights are not loaded") as error:
        EmbeddedDiffusionModel.from_pretrained(folder)
    assert error.value.path == folder / "unet"
    assert not marker.exists()


def test_not_a_model_folder(tmp_path):
    with pytest.raises(InputError, match=MODEL_CONFIG_NAME) as error:
        EmbeddedDiffusionModel.from_pretrained(tmp_path)
    assert error.value.path == tmp_path


def test_model_config_with_unknown_key_names_the_file(saved, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved[1], folder)
    config_path = folder / MODEL_CONFIG_NAME
    data = json.loads(config_path.read_text())
    data["denoiser"]["channels"] = 7
    config_path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown DenoiserConfig key") as error:
        EmbeddedDiffusionModel.from_pretrained(folder)
    assert error.value.path == config_path


@pytest.mark.parametrize(
    "config",
    [
        tiny_model_config(),
        tiny_model_config(autoencoder=None, class_table=None, conditioning="none"),
        tiny_model_config(conditioning="class", scene_classes=SCENE_CLASSES),
        EmbeddedModelConfig(),
    ],
    ids=["tiny", "pixels-unconditional", "scene-classes", "default"],
)
def test_config_json_round_trip(config, tmp_path):
    save_config(config, tmp_path / "config.json")
    assert load_config(EmbeddedModelConfig, tmp_path / "config.json") == config


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data.update(colour="red"),
        lambda data: data["autoencoder"].update(depth=3),
    ],
    ids=["top-level", "nested"],
)
def test_config_json_rejects_unknown_keys(change, tmp_path):
    data = config_to_dict(tiny_model_config())
    change(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown") as error:
        load_config(EmbeddedModelConfig, path)
    assert error.value.path == path


@pytest.mark.parametrize(
    "changes",
    [
        {"conditioning": "sound"},
        {"conditioning": "class"},  # without scene classes
        {"prediction_type": "noise"},
        {"class_table": {"classes": []}},
    ],
)
def test_invalid_config_is_refused(changes):
    with pytest.raises(ValueError):
        tiny_model_config(**changes)


def test_size_multiple():
    assert tiny_model_config().size_multiple == 4  # 2× autoencoder × 2× UNet
    assert tiny_model_config(autoencoder=None).size_multiple == 2
    assert EmbeddedModelConfig().size_multiple == 4 * 8
    model = tiny_model()
    for side in (4, 8, 12):  # any multiple of size_multiple runs through the UNet
        noisy = torch.randn(1, 4, side // 2, side // 2)
        with torch.no_grad():
            out = model.predict(
                noisy, torch.tensor([5]), model.layout_channels(None, 1, (side // 2,) * 2), model.condition(1)
            )
        assert out.shape == noisy.shape


def test_layout_to_channels_shapes_and_shares():
    layout = torch.randint(0, 5, (3, 16, 16), generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([True, False, True])
    channels = layout_to_channels(layout, 5, 3, (4, 4), keep)
    assert channels.shape == (3, 6, 4, 4)
    shares = channels[:, :5]
    assert torch.allclose(shares[keep].sum(1), torch.ones(2, 4, 4))  # class shares sum to 1 where given
    assert (shares >= 0).all() and (shares <= 1).all()
    assert torch.equal(channels[keep, 5], torch.ones(2, 4, 4))  # the "layout given" channel
    assert not channels[~keep].any()  # a dropped layout is all zeros
    # Shares are the area average of the one-hot: the class counts of each 4×4 block.
    block = layout[0, :4, :4]
    expected = torch.bincount(block.flatten(), minlength=5).float() / 16
    assert torch.allclose(shares[0, :, 0, 0], expected)


def test_layout_to_channels_at_full_size_is_one_hot():
    layout = torch.tensor([[0, 1], [2, 4]])
    channels = layout_to_channels(layout, 5, 2, (2, 2))  # a 2-D layout serves the whole batch
    assert channels.shape == (2, 6, 2, 2)
    assert torch.equal(channels[:, :5].argmax(1), layout.expand(2, -1, -1))
    assert torch.equal(channels[:, :5].sum(1), torch.ones(2, 2, 2))


def test_layout_to_channels_without_layout_is_zero():
    channels = layout_to_channels(None, 5, 2, (3, 3))
    assert channels.shape == (2, 6, 3, 3) and not channels.any()


def test_condition_encoder_keep_false_gives_the_null_embedding():
    torch.manual_seed(0)
    encoder = ConditionEncoder(text_dim=12, embed_dim=16)
    with torch.no_grad():
        encoder.null_embedding.normal_()  # make "null" distinguishable from zeros
    embeds = torch.randn(3, 12)
    out = encoder(3, text_embeds=embeds, keep=torch.tensor([True, False, True]))
    assert out.shape == (3, 16)
    assert torch.equal(out[1], encoder.null_embedding)
    assert not torch.equal(out[0], encoder.null_embedding)
    assert torch.allclose(out[[0, 2]], encoder(2, text_embeds=embeds[[0, 2]]), atol=1e-6)
    assert torch.equal(encoder(2), encoder.null_embedding.expand(2, -1))  # no condition at all


def test_condition_encoder_scene_classes():
    torch.manual_seed(0)
    encoder = ConditionEncoder(text_dim=0, num_scene_classes=3, embed_dim=8)
    out = encoder(2, class_ids=torch.tensor([0, 2]), keep=torch.tensor([True, False]))
    assert torch.equal(out[0], encoder.class_embedding.weight[0])
    assert torch.equal(out[1], encoder.null_embedding)


def test_fingerprint_changes_with_the_weights(saved, tmp_path):
    _, folder = saved
    assert model_fingerprint(folder) == model_fingerprint(folder)
    other = save_tiny_model(tmp_path / "other", seed=4)
    assert model_fingerprint(other) != model_fingerprint(folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert model_fingerprint(copy) == model_fingerprint(folder)  # depends on contents, not location


def test_growing_the_decoder_keeps_what_it_decodes_and_survives_saving(tmp_path):
    from safetensors.torch import load_file, save_file

    from terrasynth.errors import InputError
    from terrasynth.models.embedded import (
        AutoencoderConfig,
        decoder_depth,
        grow_decoder,
        load_autoencoder,
        save_autoencoder,
    )

    torch.manual_seed(0)
    vae = AutoencoderConfig(block_out_channels=(8, 16), layers_per_block=1).build()
    for parameter in vae.parameters():  # trained-looking weights, so a wrong copy would show
        parameter.data.normal_(0, 0.1)
    latents = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        before = vae.decode(latents).sample
        grow_decoder(vae, 3)
        after = vae.decode(latents).sample
    assert decoder_depth(vae) == 3
    assert torch.allclose(before, after, atol=1e-6)
    assert len(vae.encoder.down_blocks[0].resnets) == 1  # the encoder keeps its depth
    save_autoencoder(vae, tmp_path / "vae")
    with torch.no_grad():
        assert torch.allclose(load_autoencoder(tmp_path / "vae").decode(latents).sample, after)
    with pytest.raises(ValueError, match="already has 3"):
        grow_decoder(vae, 2)
    # Weights that do not fit the recorded depth are refused by name, not loaded half-way.
    weights = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if ".resnets.3." not in k}, str(weights))
    with pytest.raises(InputError, match="do not fit its config.json"):
        load_autoencoder(tmp_path / "vae")
    built = AutoencoderConfig(block_out_channels=(8, 16), layers_per_block=1, decoder_layers_per_block=2).build()
    assert decoder_depth(built) == 2 and built.config.decoder_layers_per_block == 2
    with pytest.raises(ValueError, match="at least layers_per_block"):
        AutoencoderConfig(layers_per_block=2, decoder_layers_per_block=1)
