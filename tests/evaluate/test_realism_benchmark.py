"""benchmarks/realism.py end to end on tiny fake data (a tiny untrained model, 32-px tiles)."""

from __future__ import annotations

import json

import torch
from tests.benchmark_scripts import load_benchmark
from tests.fake_models import FakeTextEncoder, save_tiny_model
from tests.fakes import make_paired_tiles

from terrasynth.generate.pipeline import LayoutToImagePipeline
from terrasynth.models.pix2pix import Pix2PixConfig, UNetGenerator, save_pix2pix


def test_benchmark_runs_end_to_end_on_tiny_fake_data(tmp_path, capsys):
    root = make_paired_tiles(tmp_path / "pairs", n=16, size=32)
    pipeline = LayoutToImagePipeline.from_pretrained(save_tiny_model(tmp_path / "model"))
    pipeline._text_encoder = FakeTextEncoder()
    pix2pix = save_pix2pix(UNetGenerator(Pix2PixConfig(5, base_channels=4, depth=3)), tmp_path / "pix2pix")
    out = tmp_path / "report"
    argv = [
        "--data",
        str(root),
        "--split",
        "all",
        "--floor",
        "half",
        "--train-split",
        "all",
        "--size",
        "32",
        "--limit",
        "16",
        "--steps",
        "2",
        "--guidance",
        "1,3,3@0.5-1",
        "--sweep-steps",
        "1,2",
        "--sweep-schedulers",
        "ddim,euler",
        "--sweep-limit",
        "6",
        "--throughput-n",
        "12",
        "--kid-subsets",
        "3",
        "--pix2pix",
        str(pix2pix),
        "--segmenter",
        str(tmp_path / "none"),
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(out),
        "--down-up",
        "16",
        "--quiet",
    ]
    results = load_benchmark("realism").main(argv, bundle=(pipeline, "tiny", "0" * 64))
    rows = results["rows"]
    assert list(rows)[0] == "real vs real (floor)" and "baseline: pix2pix" in rows
    assert {
        "baseline: colour fill + noise",
        "baseline: nearest-layout retrieval",
        "reference: real 16px down-up",
        "reference: training tiles matched by class shares",
    } <= set(rows)
    assert rows["real vs real (floor)"]["FD_effnet"]["n_fake"] == 8
    # the training split is the evaluated one here, so retrieval returns the very tiles: all flagged as copies
    assert rows["baseline: nearest-layout retrieval"]["memorised_fraction"]["value"] == 1.0
    assert rows["model (dpm++sde, 2 steps, guidance 1)"]["KID_effnet"]["std"] > 0
    assert "model (dpm++sde, 2 steps, guidance 3)" in rows
    interval_row = rows["model (dpm++sde, 2 steps, guidance 3 at t/T 0.5–1)"]
    assert interval_row["FD_effnet"]["value"] != rows["model (dpm++sde, 2 steps, guidance 3)"]["FD_effnet"]["value"]
    assert set(results["sweep"]) == {"ddim", "euler"} and set(results["sweep"]["ddim"]) == {1, 2}
    assert results["throughput"]["images"] == 12 and results["throughput"]["images_per_s"] > 0
    assert (out / "plot-steps.png").is_file() and (out / "report.html").is_file()
    assert json.loads((out / "metrics.json").read_text())["ratios"]["real vs real (floor)"]["FD_effnet"] == 1.0
    # defect and fresh-detector columns on every row
    for row in rows.values():
        assert 0 <= row["magenta_share"]["value"] <= 1 and row["magenta_share"]["ratio"] >= 0
        assert 0 <= row["C2ST_AUC"]["value"] <= 1 and row["C2ST_AUC"]["halves"] == 10
    assert rows["real vs real (floor)"]["C2ST_AUC"]["against"] == "half"
    assert any(note.startswith("C2ST_AUC") and "chance" in note for note in results["notes"])
    printed = capsys.readouterr().out
    assert "command: python benchmarks/realism.py" in printed and "images/s" in printed
    assert "layout fidelity missing" in printed


def test_colour_oracle_restores_a_set_that_differs_from_the_real_tiles_only_in_colour(tmp_path, capsys):
    """Generated = real tiles at 80 % brightness: matching each one's mean and spread to its real tile gives the
    real tiles back, so that row scores what the real tiles score; unmatched, the set scores worse."""
    import numpy as np
    from PIL import Image

    root = make_paired_tiles(tmp_path / "pairs", n=12, size=32)
    module = load_benchmark("colour_oracle")
    generated = tmp_path / "generated"
    generated.mkdir()
    for path in sorted((root / "images").glob("*.png")):
        dimmer = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) * 0.8
        Image.fromarray(dimmer.round().astype(np.uint8)).save(generated / f"{path.stem}-000.png")
    argv = ["--generated", str(generated), "--data", str(root), "--split", "all", "--reference-split", "all"]
    results = module.main([*argv, "--size", "32"])
    real, dim = results["real tiles"]["FD_effnet"], results["generated"]["FD_effnet"]
    restored = results["generated, mean and spread of its real tile"]["FD_effnet"]
    assert abs(restored - real) < 0.1 * (dim - real)
    assert "KID" in capsys.readouterr().out


def test_colour_benchmark_scores_round_trips_against_a_reference_split(tmp_path):
    from tests.fake_models import save_tiny_autoencoder

    module = load_benchmark("autoencoder_colour")
    pairs = make_paired_tiles(tmp_path / "pairs", n=8, size=32)
    vae = str(save_tiny_autoencoder(tmp_path / "vae"))
    argv = ["--data", str(pairs), "--split", "all", "--size", "32", "--autoencoder", vae, "--reference-split", "all"]
    results = module.main(argv)
    # The reference is the evaluated tiles themselves: the real row scores zero, the untrained round trip more.
    assert results["real"]["fd_effnet"] < 1e-3
    assert results[vae]["fd_effnet"] > 1.0 and results[vae]["kid_effnet"] > results["real"]["kid_effnet"]
    # The same tiles lie in each other's manifolds: precision and recall 1.
    assert results["real"]["precision_effnet"] == 1.0 and results["real"]["recall_effnet"] == 1.0
    assert 0 <= results[vae]["precision_effnet"] <= 1 and 0 <= results[vae]["recall_effnet"] <= 1


def test_guidance_rescale_gets_its_own_row_label_and_image_cache(tmp_path):
    module = load_benchmark("realism")
    dataset = module.load_split(make_paired_tiles(tmp_path / "pairs", n=2, size=32), "all", 32)
    pipeline = LayoutToImagePipeline.from_pretrained(save_tiny_model(tmp_path / "model"))
    pipeline._text_encoder = FakeTextEncoder()
    bundle, work = (pipeline, "tiny", "0" * 64), tmp_path / "work"
    plain = module.generate_model_set(bundle, dataset, work, "ddim", 2, 32, 5.0, 0, False)
    rescaled = module.generate_model_set(bundle, dataset, work, "ddim", 2, 32, 5.0, 0, False, None, 0.7)
    assert sorted(p.name for p in work.iterdir()) == [
        "model-000000000000-ddim-2steps-g5-seed0-32px",
        "model-000000000000-ddim-2steps-g5r0.7-seed0-32px",
    ]
    assert not torch.allclose(plain, rescaled, atol=1e-3)
    assert module.guidance_label(5.0, (0.5, 1.0), 0.7) == "5 at t/T 0.5–1, rescale 0.7"
    assert module.guidance_label(5.0, None) == "5"
