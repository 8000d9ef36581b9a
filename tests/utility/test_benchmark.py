"""benchmarks/utility.py runs end to end at tiny sizes on fake data with ready synthetic folders."""

from __future__ import annotations

from tests.benchmark_scripts import load_benchmark
from tests.fakes import make_scene_folder
from tests.utility.helpers import make_spread_pairs


def test_benchmark_runs_on_fake_data(tmp_path, capsys):
    benchmark = load_benchmark("utility")
    data = tmp_path / "data"
    make_scene_folder(data / "rsscn7", ("forest", "resident"), n=12, size=32)
    pairs = make_spread_pairs(data / "landcoverai_pairs", n=40, size=32)
    scenes = make_scene_folder(tmp_path / "synthetic-scenes", ("forest", "resident"), n=3, size=32, seed=1)
    layouts = tmp_path / "synthetic-layouts"
    layouts.mkdir()
    for image in sorted((pairs / "images").glob("*.png")):
        (layouts / f"{image.stem}-000.png").write_bytes(image.read_bytes())
    code = benchmark.main(
        [
            "--data-root",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--quick",
            "--seeds",
            "1",
            "--steps",
            "1",
            "--size",
            "32",
            "--classify-shots",
            "2",
            "--segment-shots",
            "2",
            "--classify-synthetic",
            str(scenes),
            "--segment-synthetic",
            str(layouts),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "## classify" in printed and "## segment" in printed and "command: python" in printed
    assert "target (classify" in printed and "target (segment" in printed
    assert (tmp_path / "out" / "classify" / "curves.png").is_file()
    assert (tmp_path / "out" / "segment" / "summary.md").is_file()
