"""benchmarks/prompt_adherence.py end to end on tiny fake data: a tiny model, a tiny scene classifier."""

from __future__ import annotations

import json

import torch
from tests.benchmark_scripts import load_benchmark
from tests.fake_models import FakeTextEncoder, save_tiny_model
from tests.fakes import make_scene_folder

from terrasynth.generate.pipeline import LayoutToImagePipeline
from terrasynth.models.recognition import Classifier, ClassifierConfig, save_model

CLASSES = ("forest", "river_lake", "resident")


def test_benchmark_reports_per_class_accuracy_and_the_ratio(tmp_path):
    scenes = make_scene_folder(tmp_path / "scenes", CLASSES, n=12, size=32)
    # the classifier's class order differs from the folder's: the benchmark maps by name
    names = tuple(reversed(CLASSES))
    torch.manual_seed(0)  # an untrained classifier: seeded, so the real tiles' accuracy is fixed (and not 0)
    classifier = save_model(
        Classifier(ClassifierConfig(3, names, backbone="small_cnn", pretrained=False)), tmp_path / "classifier"
    )
    pipeline = LayoutToImagePipeline.from_pretrained(save_tiny_model(tmp_path / "model"))
    pipeline._text_encoder = FakeTextEncoder()
    argv = ["--scenes", str(scenes), "--split", "all", "--classifier", str(classifier), "--per-class", "2"]
    argv += ["--size", "32", "--steps", "2", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "out.json")]
    results = load_benchmark("prompt_adherence").main([*argv, "--quiet"], bundle=(pipeline, "tiny", "0" * 64))
    assert results["classes"] == list(names)
    assert results["generated"]["n"] == 6 and results["real"]["n"] == 36
    assert all(0 <= v <= 1 for v in results["generated"]["per_class"] + results["real"]["per_class"])
    assert sum(map(sum, results["confusion_generated"])) == 6 and results["adherence_ratio"] >= 0
    assert json.loads((tmp_path / "out.json").read_text())["adherence_ratio"] == results["adherence_ratio"]
    # cached: a rerun generates nothing new
    files = sorted((tmp_path / "work").rglob("*.png"))
    load_benchmark("prompt_adherence").main([*argv, "--quiet"], bundle=(pipeline, "tiny", "0" * 64))
    assert sorted((tmp_path / "work").rglob("*.png")) == files and len(files) == 6
