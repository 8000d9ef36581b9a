"""benchmarks/watermark.py end to end on a few tiny tiles made in code."""

import json

import numpy as np
from tests.benchmark_scripts import load_benchmark
from tests.detect.fake_tiles import smooth_field, write_set


def test_watermark_benchmark_runs_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_set(tmp_path / "real", [smooth_field(rng, 128, noise=2.0, cell=16) for _ in range(4)], ".jpg")
    benchmark = load_benchmark("watermark")
    figures = benchmark.main(
        ["--real", str(tmp_path / "real"), "--n", "4", "--robust-n", "2", "--json", str(tmp_path / "w.json")]
    )
    out = capsys.readouterr().out
    assert out.startswith("command: python benchmarks/watermark.py --real")
    assert set(figures["schemes"]) == {"ts-sync-v2", "ts-dct-iss-v1"}
    v2 = figures["schemes"]["ts-sync-v2"]
    assert set(v2["perturbations"]) == set(benchmark.PERTURBATIONS)
    assert {"crop0.5+jpeg75", "rot90", "flip", "resize2"} <= set(v2["perturbations"])
    assert v2["perturbations"]["clean"]["recovered"] == 1.0
    assert v2["false_positives"]["clean"]["hits"] == 0 and v2["false_positives"]["jpeg75"]["upper95"] < 1
    assert set(v2["localisation"]) == set(benchmark.COMPOSITES)
    assert "false positives on unmarked real tiles (jpeg75)" in out and "composite" in out
    assert json.loads((tmp_path / "w.json").read_text())["schemes"]["ts-sync-v2"]["n_robust"] == 2
