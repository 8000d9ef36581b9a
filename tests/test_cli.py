"""``terrasynth <command>`` run in-process: outputs on success; exit 2, one line naming the file and no output
on bad input; train → resume → export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_bounds
from safetensors.torch import load_file
from tests.fake_models import FakeTextEncoder, save_tiny_autoencoder, save_tiny_model, tiny_model_config
from tests.fakes import (
    ORIGIN_X,
    ORIGIN_Y,
    UTM_33N,
    make_paired_tiles,
    make_scene_folder,
    random_mask,
    sample_features,
    write_geojson,
    write_mask_png,
)

from terrasynth.cli import main
from terrasynth.config import config_to_dict
from terrasynth.generate.provenance import read_provenance
from terrasynth.models.embedded import EmbeddedDiffusionModel
from terrasynth.train.diffusion import DiffusionTrainConfig
from terrasynth.train.run import read_metrics


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def fake_text_encoder(monkeypatch):
    """MiniLM takes seconds to load; these tests check files and exit codes, not prompt understanding."""
    monkeypatch.setattr("terrasynth.models.text.default_text_encoder", lambda: FakeTextEncoder())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=2)


@pytest.fixture
def mask_png(tmp_path):
    return write_mask_png(tmp_path / "layout.png", random_mask(np.random.default_rng(0), 32))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def generate_args(model_dir, out, *extra):
    return ["generate", "--model", model_dir, "--out", out, "--steps", "2", "-q", *extra]


def test_generate_from_a_mask_then_info_shows_provenance(capsys, model_dir, mask_png, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = run(
        capsys,
        *generate_args(
            model_dir,
            out,
            "--layout",
            mask_png,
            "--n",
            "2",
            "--seed",
            "7",
            "--prompt",
            "aerial image of a village",
        ),
    )
    assert code == 0
    written = [out / "layout-000.png", out / "layout-001.png"]
    assert stdout.split() == [str(p) for p in written]
    assert sorted(p.name for p in out.iterdir()) == ["layout-000.png", "layout-001.png", "layout-grid.png"]
    record = read_provenance(written[1])
    assert record.seed == 8 and record.prompt == "aerial image of a village" and record.synthetic

    code, stdout, _ = run(capsys, "info", written[0])
    assert code == 0
    assert "provenance:" in stdout
    assert "  prompt: aerial image of a village" in stdout.splitlines()
    assert "  seed: 7" in stdout.splitlines()
    code, stdout, _ = run(capsys, "info", written[0], "--json")
    info = json.loads(stdout)
    assert (info["width"], info["height"]) == (32, 32)
    assert info["provenance"]["seed"] == 7 and info["provenance"]["steps"] == 2


def test_generate_with_the_shipped_text_encoder(capsys, model_dir, mask_png, tmp_path, monkeypatch):
    monkeypatch.undo()  # the real all-MiniLM-L6-v2 encoder, loaded from its package without a network
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys,
        *generate_args(
            model_dir,
            out,
            "--layout",
            mask_png,
            "--n",
            "1",
            "--seed",
            "1",
            "--prompt",
            "aerial image of a forest",
        ),
    )
    assert code == 0, stderr
    assert read_provenance(out / "layout-000.png").prompt == "aerial image of a forest"


def test_generate_is_reproducible_from_the_recorded_seed(capsys, model_dir, mask_png, tmp_path):
    run(capsys, *generate_args(model_dir, tmp_path / "a", "--layout", mask_png, "--n", "2", "--seed", "3"))
    run(capsys, *generate_args(model_dir, tmp_path / "b", "--layout", mask_png, "--n", "1", "--seed", "4"))
    from PIL import Image

    second = np.asarray(Image.open(tmp_path / "a" / "layout-001.png"))
    alone = np.asarray(Image.open(tmp_path / "b" / "layout-000.png"))
    assert np.abs(second.astype(int) - alone.astype(int)).max() <= 1


def test_generate_from_a_prompt_with_size(capsys, model_dir, tmp_path):
    out = tmp_path / "out"
    code, _, _ = run(
        capsys,
        *generate_args(
            model_dir,
            out,
            "--prompt",
            "farm fields",
            "--n",
            "1",
            "--height",
            "20",
            "--width",
            "16",
            "--scheduler",
            "euler",
        ),
    )
    assert code == 0
    info = json.loads(run(capsys, "info", out / "generated-000.png", "--json")[1])
    assert (info["width"], info["height"]) == (16, 20)
    assert info["provenance"]["scheduler"] == "euler"


@pytest.fixture
def geojson(tmp_path):
    return write_geojson(tmp_path / "fields.geojson", sample_features(), crs=UTM_33N)


def test_geojson_layout_gives_geotiffs_on_the_layouts_grid(capsys, model_dir, geojson, tmp_path):
    out = tmp_path / "out"
    code, _, _ = run(capsys, *generate_args(model_dir, out, "--layout", geojson, "--size", "32", "--n", "1"))
    assert code == 0
    with rasterio.open(out / "fields-000.tif") as src:
        assert src.crs.to_epsg() == 32633
        # The features span 32 m × 32 m from the origin: a 32-pixel grid of 1 m pixels.
        assert src.transform.almost_equals(from_bounds(ORIGIN_X, ORIGIN_Y - 32, ORIGIN_X + 32, ORIGIN_Y, 32, 32))
        assert (src.width, src.height, src.count) == (32, 32, 3)
    assert read_provenance(out / "fields-000.tif").layout_source == str(geojson)


def test_geojson_on_an_explicit_grid_in_its_own_crs(capsys, model_dir, geojson, tmp_path):
    out = tmp_path / "out"
    bounds = (ORIGIN_X, ORIGIN_Y - 16, ORIGIN_X + 16, ORIGIN_Y)
    grid = ",".join(str(v) for v in bounds)
    # No --grid-crs: the grid is in the GeoJSON's CRS.
    code, _, err = run(
        capsys,
        *generate_args(model_dir, out, "--layout", geojson, "--size", "16", "--n", "1", "--grid", grid),
    )
    assert code == 0, err
    with rasterio.open(out / "fields-000.tif") as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform.almost_equals(from_bounds(*bounds, 16, 16))


def write_config_with_unknown_key(tmp_path):
    path = tmp_path / "bad-config.json"
    path.write_text(json.dumps({"paired_roots": ["x"], "learning_rat": 1e-4}))
    return path


def copy_model(source, folder, move_weights_of: str, suffix: str | None):
    """A copy of the model folder whose ``move_weights_of`` part has its safetensors deleted (``suffix`` None)
    or renamed to ``suffix``."""
    shutil.copytree(source, folder)
    for weights in (folder / move_weights_of).glob("*.safetensors"):
        if suffix:
            weights.rename(weights.with_suffix(suffix))
        else:
            weights.unlink()
    return folder


# Each bad-input case: (model, mask, geojson, tmp) → (generate arguments, the path the message must name).
def missing_layout(model, mask, geojson, tmp):
    return ["--model", model, "--layout", tmp / "nope.png"], tmp / "nope.png"


def class_id_outside_the_table(model, mask, geojson, tmp):
    array = random_mask(np.random.default_rng(1), 32)
    array[5:9, 5:9] = 9  # the class table has 0..4
    path = write_mask_png(tmp / "bad-mask.png", array, mode="L")
    return ["--model", model, "--layout", path], path


def model_folder_without_weights(model, mask, geojson, tmp):
    folder = copy_model(model, tmp / "no-weights", "unet", None)
    return ["--model", folder, "--layout", mask], folder / "unet"


def non_safetensors_weights(model, mask, geojson, tmp):
    folder = copy_model(model, tmp / "bin-weights", "vae", ".bin")
    return ["--model", folder, "--layout", mask], folder / "vae"


def missing_model_folder(model, mask, geojson, tmp):
    return ["--model", tmp / "no-model"], tmp / "no-model"


def geojson_without_features(model, mask, geojson, tmp):
    path = write_geojson(tmp / "empty.geojson", [], crs=UTM_33N)
    return ["--model", model, "--layout", path], path


def geojson_crs_differs_from_grid_crs(model, mask, geojson, tmp):
    grid = f"{ORIGIN_X},{ORIGIN_Y - 32},{ORIGIN_X + 32},{ORIGIN_Y}"
    return ["--model", model, "--layout", geojson, "--grid", grid, "--grid-crs", "EPSG:4326"], geojson


def geojson_crs_differs_from_grid_crs_without_grid(model, mask, geojson, tmp):
    return ["--model", model, "--layout", geojson, "--grid-crs", "EPSG:4326"], geojson


def not_a_layout_format(model, mask, geojson, tmp):
    path = tmp / "layout.txt"
    path.write_text("forest")
    return ["--model", model, "--layout", path], path


@pytest.mark.parametrize(
    "case",
    [
        missing_layout,
        class_id_outside_the_table,
        model_folder_without_weights,
        non_safetensors_weights,
        missing_model_folder,
        geojson_without_features,
        geojson_crs_differs_from_grid_crs,
        geojson_crs_differs_from_grid_crs_without_grid,
        not_a_layout_format,
    ],
    ids=lambda case: case.__name__,
)
def test_bad_generate_input_exits_2_naming_the_file_and_writes_nothing(
    capsys, model_dir, mask_png, geojson, tmp_path, case
):
    args, named = case(model_dir, mask_png, geojson, tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "generate", "--out", out, "--steps", "2", "-q", *args)
    assert code == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("terrasynth: error: ")
    assert str(named) in lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "args",
    [
        ["--steps", "0"],
        ["--n", "0"],
        ["--grid", "1,2,3"],
        ["--grid", "5,5,1,1"],
        ["--guidance-interval", "0.7,0.2"],
        ["--guidance-interval", "half"],
        ["--guidance-rescale", "1.5"],
    ],
)
def test_bad_generate_options_exit_2(capsys, model_dir, mask_png, tmp_path, args):
    code, _, stderr = run(capsys, *generate_args(model_dir, tmp_path / "out", "--layout", mask_png, *args))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("terrasynth: error: ")
    assert not (tmp_path / "out").exists()


def test_generate_from_an_init_image_records_it_and_stays_nearer_to_it(capsys, model_dir, mask_png, tmp_path):
    from PIL import Image

    from terrasynth.data.images import read_image
    from terrasynth.files import file_sha256

    init = tmp_path / "real.png"
    pixels = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)  # resized to the 32-px layout
    Image.fromarray(pixels).save(init)
    target = torch.nn.functional.interpolate(read_image(init)[None], (32, 32), mode="bilinear", antialias=True)[0]
    distances = {}
    for strength in ("0.2", "1"):
        out = tmp_path / f"out-{strength}"
        extra = ["--layout", mask_png, "--seed", "0", "--steps", "10", "--init-image", init, "--strength", strength]
        code, stdout, _ = run(capsys, *generate_args(model_dir, out, *extra))
        assert code == 0
        written = stdout.split()[0]
        record = read_provenance(written)
        assert record.synthetic and record.extra["init_image_sha256"] == file_sha256(init)
        assert record.extra["strength"] == float(strength)
        distances[strength] = (read_image(written) - target).abs().mean().item()
    assert distances["0.2"] < distances["1"]
    code, _, stderr = run(
        capsys,
        *generate_args(model_dir, tmp_path / "bad", "--layout", mask_png, "--init-image", init, "--strength", "0"),
    )
    assert code == 2 and "--strength" in stderr and not (tmp_path / "bad").exists()
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    code, _, stderr = run(
        capsys, *generate_args(model_dir, tmp_path / "bad", "--layout", mask_png, "--init-image", broken)
    )
    assert code == 2 and str(broken) in stderr and len(stderr.strip().splitlines()) == 1


def write_inpaint_inputs(folder, size: int = 32):
    """(init tile PNG, its pixels, a mask PNG white over a 16×16 square, that square as bool)."""
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "tile.png")
    redraw = np.zeros((size, size), bool)
    redraw[8:24, 8:24] = True
    Image.fromarray(redraw.astype(np.uint8) * 255).save(folder / "edit.png")
    return folder / "tile.png", pixels, folder / "edit.png", redraw


def test_generate_inpaints_only_the_masked_region(capsys, model_dir, mask_png, tmp_path):
    from PIL import Image

    from terrasynth.files import file_sha256

    tile, pixels, mask, redraw = write_inpaint_inputs(tmp_path)
    out = tmp_path / "out"
    extra = ["--layout", mask_png, "--n", "1", "--seed", "0", "--init-image", tile, "--inpaint-mask", mask]
    code, stdout, _ = run(capsys, *generate_args(model_dir, out, *extra))
    assert code == 0
    written = stdout.split()[0]
    image = np.asarray(Image.open(written).convert("RGB"))
    assert np.array_equal(image[~redraw], pixels[~redraw]) and not np.array_equal(image[redraw], pixels[redraw])
    record = read_provenance(written)
    assert record.extra["inpaint_mask_sha256"] == file_sha256(mask) and record.extra["inpaint_area"] == 0.25
    assert record.extra["strength"] == 1.0


@pytest.mark.parametrize("change", ["size", "empty", "full", "unreadable", "no-init"])
def test_bad_inpaint_masks_exit_2_before_the_model_loads(capsys, mask_png, tmp_path, change):
    from PIL import Image

    tile, _, mask, redraw = write_inpaint_inputs(tmp_path)
    if change == "size":
        Image.fromarray(redraw[:30].astype(np.uint8) * 255).save(mask)
    elif change in ("empty", "full"):
        Image.fromarray(np.full((32, 32), 0 if change == "empty" else 255, np.uint8)).save(mask)
    elif change == "unreadable":
        mask.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    init = [] if change == "no-init" else ["--init-image", tile]
    # No model folder at all: the mask is checked before any model would load.
    args = generate_args(tmp_path / "no-model", tmp_path / "out", "--layout", mask_png, *init, "--inpaint-mask", mask)
    code, _, stderr = run(capsys, *args)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("terrasynth: error: ") and str(mask) in stderr
    if change == "size":
        assert "32×30" in stderr and str(tile) in stderr and "32×32" in stderr
    if change == "no-init":
        assert "--init-image TILE" in stderr
    assert not (tmp_path / "out").exists()


def test_info_on_a_file_that_is_not_an_image(capsys, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    code, _, stderr = run(capsys, "info", path)
    assert code == 2 and str(path) in stderr and len(stderr.strip().splitlines()) == 1


# Training through the CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    pairs = make_paired_tiles(root / "pairs", n=6, size=32)
    scenes = make_scene_folder(root / "scenes", ("forest", "river_lake"), n=4, size=32)
    autoencoder = save_tiny_autoencoder(root / "autoencoder")
    return root, pairs, scenes, autoencoder


def write_train_config(path, run_dir, pairs, scenes, autoencoder, max_steps: int = 2):
    config = DiffusionTrainConfig(
        paired_roots=(str(pairs),),
        scene_roots=(str(scenes),),
        output_dir=str(run_dir),
        model=tiny_model_config(),
        autoencoder_path=str(autoencoder),
        resolution=32,
        batch_size=2,
        max_steps=max_steps,
        checkpoint_every=2,
        validate_every=4,
        validation_steps=1,
        log_every=1,
    )
    path.write_text(json.dumps(config_to_dict(config)))
    return path


def test_train_resume_and_export(capsys, train_inputs, tmp_path):
    _, pairs, scenes, autoencoder = train_inputs
    run_dir = tmp_path / "run"
    config = write_train_config(tmp_path / "train.json", run_dir, pairs, scenes, autoencoder)

    code, stdout, stderr = run(capsys, "train", "--config", config, "-q")
    assert code == 0, stderr
    assert stdout.strip() == str(run_dir / "model")
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]

    code, stdout, stderr = run(capsys, "train", "--config", config, "--resume", "latest", "--max-steps", "4", "-q")
    assert code == 0, stderr
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]  # continued at step 3
    assert (run_dir / "checkpoint-4" / "state.json").is_file()
    assert (run_dir / "validation" / "step-000004.png").is_file()
    assert json.loads((run_dir / "config.json").read_text())["max_steps"] == 4

    exported = tmp_path / "exported"
    code, stdout, stderr = run(capsys, "export", "--run", run_dir, "--out", exported, "-q")
    assert code == 0, stderr
    assert stdout.strip() == str(exported)
    model = EmbeddedDiffusionModel.from_pretrained(exported)
    ema = load_file(run_dir / "checkpoint-4" / "ema.safetensors")
    unet = model.unet.state_dict()
    assert all(torch.equal(unet[k], ema[f"unet.{k}"]) for k in unet)

    code, _, stderr = run(capsys, "export", "--run", run_dir, "--out", tmp_path / "half", "--fp16", "-q")
    assert code == 0, stderr
    half = load_file(next((tmp_path / "half" / "unet").glob("*.safetensors")))
    assert all(v.dtype == torch.float16 for v in half.values())
    EmbeddedDiffusionModel.from_pretrained(tmp_path / "half")

    # A "refined" autoencoder with another encoder would not fit the latents: refused, nothing written.
    other_vae = save_tiny_autoencoder(tmp_path / "other-vae", seed=5)
    code, _, stderr = run(capsys, "export", "--run", run_dir, "--out", tmp_path / "swap", "--vae", other_vae, "-q")
    assert code == 2 and str(other_vae) in stderr and "encoder" in stderr
    assert not (tmp_path / "swap").exists()
    code, _, stderr = run(capsys, "export", "--model", exported, "--out", tmp_path / "swap", "--vae", other_vae)
    assert code == 2 and str(other_vae) in stderr and not (tmp_path / "swap").exists()

    # A decoder refined on the same encoder replaces the model's; the UNet and the encoder stay as they were.
    refined = EmbeddedDiffusionModel.from_pretrained(exported).vae
    with torch.no_grad():
        refined.decoder.conv_out.bias.add_(0.25)
    refined.save_pretrained(tmp_path / "refined-vae", safe_serialization=True)
    code, stdout, stderr = run(
        capsys,
        "export",
        "--model",
        exported,
        "--vae",
        tmp_path / "refined-vae",
        "--out",
        tmp_path / "v3",
        "--name",
        "renamed",
        "-q",
    )
    assert code == 0, stderr
    swapped = EmbeddedDiffusionModel.from_pretrained(tmp_path / "v3")
    assert swapped.config.name == "renamed"
    assert torch.allclose(swapped.vae.decoder.conv_out.bias, model.vae.decoder.conv_out.bias + 0.25)
    assert torch.equal(swapped.vae.encoder.conv_in.weight, model.vae.encoder.conv_in.weight)
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in swapped.unet.state_dict().items())

    # A model's default guidance scale is set on export, and generation without --guidance uses it.
    code, _, stderr = run(capsys, "export", "--model", exported, "--out", tmp_path / "g3", "--guidance-scale", "3")
    assert code == 0, stderr
    assert EmbeddedDiffusionModel.from_pretrained(tmp_path / "g3").config.guidance_scale == 3.0
    # an existing model folder is replaced only with --overwrite
    before = {f: f.stat().st_mtime_ns for f in (tmp_path / "g3").rglob("*")}
    code, _, stderr = run(capsys, "export", "--model", exported, "--out", tmp_path / "g3", "--guidance-scale", "4")
    assert code == 2 and "--overwrite" in stderr and len(stderr.strip().splitlines()) == 1
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "g3").rglob("*")} == before
    args = ("export", "--model", tmp_path / "g3", "--out", tmp_path / "g4", "--guidance-scale", "4")
    assert run(capsys, *args)[0] == 0
    code, _, stderr = run(capsys, *args[:-1], "3", "--overwrite")
    assert code == 0, stderr
    assert EmbeddedDiffusionModel.from_pretrained(tmp_path / "g4").config.guidance_scale == 3.0
    code, _, stderr = run(capsys, "export", "--model", exported, "--out", tmp_path / "g0", "--guidance-scale", "0.5")
    assert code == 2 and "--guidance-scale 0.5" in stderr and not (tmp_path / "g0").exists()
    code, _, stderr = run(capsys, "export", "--model", exported, "--out", tmp_path / "same")
    assert code == 2 and "--guidance-scale" in stderr

    # The exported model generates, and records the guidance scale it used.
    code, _, stderr = run(
        capsys,
        *generate_args(
            tmp_path / "g3", tmp_path / "images", "--prompt", "forest", "--n", "1", "--height", "16", "--width", "16"
        ),
    )
    assert code == 0, stderr
    assert read_provenance(tmp_path / "images" / "generated-000.png").guidance_scale == 3.0

    # So is its default number of sampling steps, which generation without --steps takes and records.
    code, _, stderr = run(capsys, "export", "--model", exported, "--out", tmp_path / "s3", "--sampling-steps", "3")
    assert code == 0, stderr
    assert EmbeddedDiffusionModel.from_pretrained(tmp_path / "s3").config.sampling_steps == 3
    code, _, stderr = run(capsys, "export", "--model", exported, "--out", tmp_path / "s0", "--sampling-steps", "0")
    assert code == 2 and "--sampling-steps 0" in stderr and not (tmp_path / "s0").exists()
    out = tmp_path / "own-steps"
    code, _, stderr = run(
        capsys, "generate", "--model", tmp_path / "s3", "--out", out, "--prompt", "forest", "--n", "1",
        "--height", "16", "--width", "16", "-q",
    )  # fmt: skip
    assert code == 0, stderr
    assert read_provenance(out / "generated-000.png").steps == 3


@pytest.mark.parametrize("flag", ["--paired", "--scenes"])
def test_train_on_an_empty_folder_exits_2_and_makes_no_run(capsys, train_inputs, tmp_path, flag):
    _, pairs, scenes, autoencoder = train_inputs
    empty = tmp_path / "empty"
    empty.mkdir()
    run_dir = tmp_path / "run"
    config = write_train_config(tmp_path / "train.json", run_dir, pairs, scenes, autoencoder)
    code, stdout, stderr = run(capsys, "train", "--config", config, flag, empty, "-q")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and str(empty) in lines[0], stderr
    assert not run_dir.exists()


def test_train_with_unknown_config_key_names_the_config(capsys, tmp_path):
    config = write_config_with_unknown_key(tmp_path)
    code, _, stderr = run(capsys, "train", "--config", config, "-q")
    assert code == 2 and str(config) in stderr and "learning_rat" in stderr


def test_train_autoencoder_on_an_empty_folder_exits_2_and_makes_no_run(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = run(capsys, "train-autoencoder", "--scenes", empty, "--out", tmp_path / "run", "-q")
    assert code == 2 and str(empty) in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_export_without_a_checkpoint_exits_2(capsys, train_inputs, tmp_path):
    _, pairs, scenes, autoencoder = train_inputs
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_train_config(run_dir / "config.json", run_dir, pairs, scenes, autoencoder)
    code, _, stderr = run(capsys, "export", "--run", run_dir, "--out", tmp_path / "model", "-q")
    assert code == 2 and str(run_dir) in stderr
    assert not (tmp_path / "model").exists()


def test_export_with_a_mean_prior_then_generate_records_each_draw(capsys, model_dir, mask_png, tmp_path):
    pairs = make_paired_tiles(tmp_path / "pairs", n=6, size=32)
    prior_model = tmp_path / "with-prior"
    code, _, stderr = run(
        capsys, "export", "--model", model_dir, "--out", prior_model, "--mean-prior", pairs,
        "--mean-prior-split", "all", "--mean-prior-size", "32", "--mean-prior-neighbours", "2", "-q",
    )  # fmt: skip
    assert code == 0, stderr
    model = EmbeddedDiffusionModel.from_pretrained(prior_model)
    assert len(model.mean_prior) == 6 and model.config.mean_prior.neighbours == 2
    assert model.config.mean_prior.start == 0.9

    out = tmp_path / "out"
    code, _, stderr = run(capsys, *generate_args(prior_model, out, "--layout", mask_png, "--n", "2", "--steps", "4"))
    assert code == 0, stderr
    draws = [read_provenance(out / f"layout-00{i}.png").extra["mean_prior"] for i in range(2)]
    assert all(0 <= d["training_tile"] < 6 and len(d["latent_mean"]) == 4 for d in draws)
    assert all(d["start_timestep"] < 900 for d in draws)
    code, _, stderr = run(
        capsys, *generate_args(prior_model, tmp_path / "off", "--layout", mask_png, "--no-mean-prior")
    )
    assert code == 0, stderr
    assert "mean_prior" not in read_provenance(tmp_path / "off" / "layout-000.png").extra

    # The fitted prior's settings change on re-export with no data; its table is kept as it was.
    moved = tmp_path / "later-start"
    code, _, stderr = run(capsys, "export", "--model", prior_model, "--out", moved, "--mean-prior-start", "0.95", "-q")
    assert code == 0, stderr
    changed = EmbeddedDiffusionModel.from_pretrained(moved)
    assert changed.config.mean_prior.start == 0.95 and changed.config.mean_prior.neighbours == 2
    assert torch.equal(changed.mean_prior.latent_means, model.mean_prior.latent_means)
    assert torch.equal(changed.mean_prior.class_shares, model.mean_prior.class_shares)
    # Refitting the table on other tiles keeps the settings not given.
    refitted = tmp_path / "refitted"
    code, _, stderr = run(
        capsys, "export", "--model", moved, "--out", refitted, "--mean-prior", pairs, "--mean-prior-split", "all",
        "--mean-prior-size", "32", "--mean-prior-neighbours", "3", "-q",
    )  # fmt: skip
    assert code == 0, stderr
    settings = EmbeddedDiffusionModel.from_pretrained(refitted).config.mean_prior
    assert (settings.start, settings.neighbours) == (0.95, 3)

    # Bad settings are refused with the flag named, and nothing is written.
    code, _, stderr = run(
        capsys, "export", "--model", model_dir, "--out", tmp_path / "bad", "--mean-prior-start", "0.5"
    )
    assert code == 2 and "--mean-prior DATA" in stderr and str(model_dir) in stderr
    code, _, stderr = run(
        capsys, "export", "--model", prior_model, "--out", tmp_path / "bad", "--mean-prior-start", "1.5"
    )
    assert code == 2 and "start must be in (0, 1)" in stderr
    code, _, stderr = run(
        capsys, "export", "--run", tmp_path / "no-run", "--out", tmp_path / "bad", "--mean-prior-start", "0.95"
    )
    assert code == 2 and "--mean-prior DATA" in stderr
    code, _, stderr = run(
        capsys, "export", "--model", model_dir, "--out", tmp_path / "bad", "--mean-prior", pairs,
        "--mean-prior-split", "all", "--mean-prior-start", "1.5",
    )  # fmt: skip
    assert code == 2 and "start must be in (0, 1)" in stderr and not (tmp_path / "bad").exists()


def test_generate_into_the_same_out_refuses_unless_overwrite(capsys, model_dir, mask_png, tmp_path):
    """A second run into --out would write the same names: it is refused, with the fix, and nothing changes; with
    --overwrite it replaces them. Another layout (another stem) writes beside them."""
    out = tmp_path / "out"
    args = generate_args(model_dir, out, "--layout", mask_png, "--n", "1", "--seed", "0")
    assert run(capsys, *args)[0] == 0
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    code, _, stderr = run(capsys, *args[:-1], "1")  # the same run again, seed 1
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "layout-000.png" in stderr and "--overwrite" in stderr
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before
    code, stdout, stderr = run(capsys, *args[:-1], "1", "--overwrite")
    assert code == 0, stderr
    assert read_provenance(out / "layout-000.png").seed == 1
    other = write_mask_png(tmp_path / "other.png", random_mask(np.random.default_rng(1), 32))
    assert run(capsys, *generate_args(model_dir, out, "--layout", other, "--n", "1"))[0] == 0
    assert (out / "other-000.png").is_file()
