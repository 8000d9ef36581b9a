"""benchmarks/layout_segmenter.py end to end on tiny fake data: two segmenters, real and generated rows, the
demo's hand-drawn layouts with their buildings and water bodies counted, how each class looks inside the layouts."""

from __future__ import annotations

from tests.benchmark_scripts import load_benchmark
from tests.fake_models import FakeTextEncoder, save_tiny_model
from tests.fakes import make_paired_tiles

from terrasynth.generate.pipeline import LayoutToImagePipeline
from terrasynth.models.recognition import Segmenter, SegmenterConfig, save_model

NAMES = ("background", "building", "woodland", "water", "road")


def test_benchmark_scores_real_generated_and_demo_rows(tmp_path):
    root = make_paired_tiles(tmp_path / "pairs", n=8, size=32)
    pipeline = LayoutToImagePipeline.from_pretrained(save_tiny_model(tmp_path / "model"))
    pipeline._text_encoder = FakeTextEncoder()
    folders = []
    for k in range(2):
        folders.append(tmp_path / f"segmenter{k}")
        save_model(Segmenter(SegmenterConfig(5, NAMES, decoder_channels=8, pretrained=False)), folders[-1])
    argv = ["--data", str(root), "--splits", "all", "--segmenters", ",".join(map(str, folders)), "--size", "32"]
    argv += ["--demo-per-layout", "1", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "out.json")]
    results = load_benchmark("layout_segmenter").main([*argv, "--quiet"], bundle=(pipeline, "tiny", "0" * 64))
    assert set(results["segmenters"]) == {str(f) for f in folders}
    for result in results["segmenters"].values():
        assert set(result["scores"]) == {"real all", "generated (all layouts)"}
        for scores in result["scores"].values():
            assert 0 <= scores["miou"] <= 1 and scores["n"] == 8
        demo = result["demo_layouts"]
        assert set(demo) == {"river_village", "lake_and_forest", "fields_utm34"}
        # river_village: one river, five buildings; each counted once per image
        assert demo["river_village"]["features"]["water"]["of"] == 1
        assert demo["river_village"]["features"]["building"]["of"] == 5
        assert 0 <= demo["river_village"]["features"]["building"]["drawn"] <= 5
    # how each class looks inside the layouts, generated against real: every class the layouts hold is read
    appearance = results["class_appearance"]
    assert set(appearance) == set(NAMES)
    for look in appearance.values():
        if look["real"]["pixels"]:
            assert look["generated"]["pixels"] == look["real"]["pixels"]
            assert 0 <= look["real"]["luma"] <= 1 and look["luma_ratio"] > 0 and look["texture_ratio"] >= 0
    assert any(look["real"]["pixels"] for look in appearance.values())
    assert (tmp_path / "out.json").is_file()
