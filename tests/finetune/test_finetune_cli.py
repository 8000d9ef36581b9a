"""``terrasynth finetune`` and ``terrasynth generate --model FOLDER`` for Stable Diffusion folders: the same files,
provenance and GeoTIFFs as the embedded model; a missing base is one line and exit 2."""

from __future__ import annotations

import rasterio
import torch
from tests.fake_sd import TINY_RESOLUTION

from terrasynth.cli import main
from terrasynth.data.images import read_image
from terrasynth.generate.provenance import read_provenance
from terrasynth.generate.sd_pipeline import sd_fingerprint


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def finetune_args(method, base, data, out, *extra):
    return (
        "finetune",
        "--method",
        method,
        "--base",
        str(base),
        "--data",
        str(data),
        "--out",
        str(out),
        "--resolution",
        str(TINY_RESOLUTION),
        "--max-steps",
        "2",
        "-q",
        *extra,
    )


def test_controlnet_finetune_then_generate_geotiff_with_provenance(capsys, tiny_sd, pairs, geotiff_mask, tmp_path):
    code, out, err = run(capsys, *finetune_args("controlnet", tiny_sd, pairs, tmp_path / "run", "--season", "summer"))
    assert code == 0, err
    model = tmp_path / "run" / "model"
    assert out.strip() == str(model)
    argv = ["generate", "--model", str(model), "--layout", str(geotiff_mask), "--prompt", "aerial image"]
    code, out, err = run(capsys, *argv, "--n", "2", "--steps", "2", "--seed", "7", "--out", str(tmp_path / "gen"), "-q")
    assert code == 0, err
    written = out.split()
    assert [p.rsplit("/", 1)[-1] for p in written] == ["mask-000.tif", "mask-001.tif"]
    with rasterio.open(written[1]) as generated, rasterio.open(geotiff_mask) as layout:
        assert generated.crs == layout.crs and generated.transform == layout.transform
        assert (generated.count, generated.height, generated.width) == (3, 32, 32)
    record = read_provenance(written[1])
    assert record.model == str(model) and record.seed == 8 and record.steps == 2
    assert record.model_sha256 == sd_fingerprint(model) and record.layout_sha256


def test_lora_finetune_then_generate_png_from_its_folder(capsys, tiny_sd, pairs, tmp_path):
    code, _, err = run(capsys, *finetune_args("lora", tiny_sd, pairs, tmp_path / "run"))
    assert code == 0, err
    model = tmp_path / "run" / "model"
    size = ("--height", "32", "--width", "32")
    argv = ["generate", "--model", str(model), "--prompt", "aerial image of a forest", *size, "--steps", "2"]
    code, out, err = run(capsys, *argv, "--n", "1", "--seed", "3", "--out", str(tmp_path / "gen"), "-q")
    assert code == 0, err
    record = read_provenance(out.split()[0])
    assert record.prompt == "aerial image of a forest" and (record.width, record.height) == (32, 32)
    # Names the LoRA and its base: a change to either changes the model hash.
    assert record.model_sha256 == sd_fingerprint(model)


def test_layout_for_a_model_without_controlnet_is_one_line(capsys, tiny_sd, geotiff_mask, tmp_path):
    argv = ["generate", "--model", str(tiny_sd), "--layout", str(geotiff_mask), "--out", str(tmp_path / "gen"), "-q"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "takes no layout" in err


def test_guidance_interval_for_stable_diffusion_is_one_line(capsys, tiny_sd, tmp_path):
    argv = ["generate", "--model", str(tiny_sd), "--guidance-interval", "0.5,1", "--out", str(tmp_path / "gen"), "-q"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "embedded model's sampler only" in err


def test_guidance_rescale_reaches_stable_diffusion_and_controlnet_refuses_it(
    capsys, tiny_sd, pairs, geotiff_mask, tmp_path
):
    size = ("--height", "32", "--width", "32", "--steps", "2", "--n", "1", "--seed", "0", "--guidance", "5", "-q")
    outputs = []
    for rescale in ("0", "0.7"):
        argv = ["generate", "--model", str(tiny_sd), "--prompt", "aerial image", "--guidance-rescale", rescale]
        code, out, err = run(capsys, *argv, *size, "--out", str(tmp_path / f"gen-{rescale}"))
        assert code == 0, err
        outputs.append(out.split()[0])
    assert read_provenance(outputs[1]).extra["guidance_rescale"] == 0.7
    assert "guidance_rescale" not in read_provenance(outputs[0]).extra
    assert not torch.equal(read_image(outputs[0]), read_image(outputs[1]))
    code, _, err = run(capsys, *finetune_args("controlnet", tiny_sd, pairs, tmp_path / "run"))
    assert code == 0, err
    argv = ["generate", "--model", str(tmp_path / "run" / "model"), "--layout", str(geotiff_mask)]
    code, out, err = run(capsys, *argv, "--guidance-rescale", "0.7", "--out", str(tmp_path / "gen-cn"), "-q")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "has no guidance rescale" in err


def test_missing_base_is_one_line_naming_it_and_the_fix(capsys, pairs, tmp_path):
    code, out, err = run(capsys, *finetune_args("lora", "nobody-here/no-such-model", pairs, tmp_path / "run"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "base model nobody-here/no-such-model not found locally and the hub is unreachable" in err
    assert "download nobody-here/no-such-model --local-dir DIR" in err and "--base DIR" in err
    code, _, err = run(capsys, *finetune_args("lora", tmp_path / "no" / "folder", pairs, tmp_path / "run2"))
    assert code == 2 and err.count("\n") == 1 and "base model folder not found" in err


def test_bad_config_is_one_line(capsys, tiny_sd, pairs, tmp_path):
    code, _, err = run(capsys, *finetune_args("dreambooth", tiny_sd, pairs, tmp_path / "run"))
    assert code == 2 and err.count("\n") == 1 and "instance prompt" in err
