"""benchmarks/split_pairings.py on tiny fake data (a tiny untrained model, 32-px tiles)."""

from __future__ import annotations

import json

import pytest
from tests.benchmark_scripts import load_benchmark
from tests.fake_models import FakeTextEncoder, save_tiny_model
from tests.fakes import make_paired_tiles

from terrasynth.generate.pipeline import LayoutToImagePipeline


def test_one_row_per_pairing_step_count_and_seed_with_the_real_tiles_beside(tmp_path, capsys):
    root = make_paired_tiles(tmp_path / "pairs", n=12, size=32)
    pipeline = LayoutToImagePipeline.from_pretrained(save_tiny_model(tmp_path / "model"))
    pipeline._text_encoder = FakeTextEncoder()
    out = tmp_path / "pairings.json"
    argv = ["--data", str(root), "--pairings", "all:all", "--limit", "10", "--steps", "1,2", "--size", "32",
            "--generation-seeds", "0,1", "--work", str(tmp_path / "work"), "--json", str(out), "--quiet"]  # fmt: skip
    benchmark = load_benchmark("split_pairings")
    benchmark.guidance._SCORINGS.clear()
    rows = benchmark.main(argv, bundle=(pipeline, "tiny", "0" * 64))
    # The tiles, the reference features and the real tiles' row are computed once for the pairing's four runs.
    assert len(benchmark.guidance._SCORINGS) == 1

    assert [(r["layouts"], r["reference"], r["steps"], r["generation_seed"]) for r in rows] == [
        ("all", "all", 1, 0),
        ("all", "all", 1, 1),
        ("all", "all", 2, 0),
        ("all", "all", 2, 1),
    ]
    for row in rows:
        assert row["model"]["KID_effnet_std"] >= 0
        assert row["KID_ratio"] == pytest.approx(row["model"]["KID_effnet"] / row["real_tiles"]["KID_effnet"])
    # An untrained model's noise is further from the real tiles than the real tiles are from themselves.
    assert rows[0]["model"]["FD_effnet"] > rows[0]["real_tiles"]["FD_effnet"]
    assert rows[0]["model"]["FD_effnet"] != rows[2]["model"]["FD_effnet"]  # steps
    # Another generation seed draws other images of the same tiles, against the same reference.
    assert rows[0]["model"]["FD_effnet"] != rows[1]["model"]["FD_effnet"]
    assert rows[0]["real_tiles"] == rows[1]["real_tiles"]
    assert json.loads(out.read_text()) == rows
    printed = capsys.readouterr().out
    assert "| all → all | 2 | 1 |" in printed


@pytest.mark.parametrize("text", ["test", "test:", "a:b:c"])
def test_a_malformed_pairing_is_refused_by_name(text):
    with pytest.raises(SystemExit, match="--pairings"):
        load_benchmark("split_pairings").parse_pairings(text)
