"""``terrasynth utility classify|segment`` end to end on tiny fake data."""

from __future__ import annotations

import json

import pytest
from tests.fake_models import FakeTextEncoder, save_tiny_model
from tests.fakes import make_scene_folder
from tests.utility.helpers import make_spread_pairs

from terrasynth.cli import main

TINY = ["--seeds", "2", "--steps", "2", "--batch-size", "4", "--size", "32", "-q"]


@pytest.fixture
def fake_text_encoder(monkeypatch):
    monkeypatch.setattr("terrasynth.models.text.default_text_encoder", lambda: FakeTextEncoder())


def _run_ids(out):
    return sorted(p.stem for p in (out / "runs").glob("*.json"))


def test_classify_with_a_ready_synthetic_folder_and_resume(tmp_path, capsys):
    real = make_scene_folder(tmp_path / "real", ("forest", "resident"), n=12, size=32)
    synthetic = make_scene_folder(tmp_path / "synthetic", ("forest", "resident"), n=4, size=32, seed=1)
    out = tmp_path / "study"
    args = [
        "utility",
        "classify",
        "--real",
        str(real),
        "--generator",
        str(synthetic),
        "--out",
        str(out),
        "--shots",
        "2",
        "--learners",
        "small_cnn",
        "--conditions",
        "real,real+synthetic,bridged",
        *TINY,
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "real + synthetic" in printed and "summary.md" in printed
    runs = _run_ids(out)
    assert len(runs) == 2 * 3
    record = json.loads((out / "runs" / f"{runs[0]}.json").read_text())
    assert {"score", "settings", "seed", "real_images", "synthetic_images"} <= set(record)
    assert (out / "curves.png").is_file() and (out / "summary.csv").is_file()
    stamps = [p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*.json"))]
    assert main([*args[:-1], "-v"]) == 0  # resumed: every run was finished
    assert "done before" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*.json"))] == stamps


def test_classify_generates_with_a_model(tmp_path, fake_text_encoder):
    real = make_scene_folder(tmp_path / "real", ("forest", "resident"), n=12, size=32)
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "study"
    assert (
        main(
            [
                "utility",
                "classify",
                "--real",
                str(real),
                "--generator",
                str(model),
                "--out",
                str(out),
                "--shots",
                "1",
                "--learners",
                "small_cnn",
                "--conditions",
                "real,synthetic",
                "--generation-steps",
                "2",
                "--generation-size",
                "32",
                *TINY,
            ]
        )
        == 0
    )
    generated = sorted((out / "synthetic" / "classify").rglob("*.png"))
    assert {p.parent.name for p in generated} == {"forest", "resident"}
    assert len(_run_ids(out)) == 4


def test_segment_generates_from_real_layouts(tmp_path, fake_text_encoder):
    pairs = make_spread_pairs(tmp_path / "pairs", n=40, size=32)
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "study"
    assert (
        main(
            [
                "utility",
                "segment",
                "--real",
                str(pairs),
                "--generator",
                str(model),
                "--out",
                str(out),
                "--shots",
                "3",
                "--generation-steps",
                "2",
                "--seeds",
                "1",
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--size",
                "32",
                "-q",
            ]
        )
        == 0
    )
    generated = sorted((out / "synthetic" / "segment").glob("*-000.png"))
    assert len(generated) == 3
    record = json.loads((out / "runs" / sorted(_run_ids(out))[0]).with_suffix(".json").read_text())
    assert record["metric"] == "miou" and set(record["iou_per_class"]) >= {"background", "woodland"}
    # the same study from a ready folder of <id>-000.png images
    assert (
        main(
            [
                "utility",
                "segment",
                "--real",
                str(pairs),
                "--generator",
                str(out / "synthetic" / "segment"),
                "--out",
                str(tmp_path / "again"),
                "--shots",
                "3",
                "--seeds",
                "1",
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--size",
                "32",
                "--conditions",
                "real+synthetic",
                "-q",
            ]
        )
        == 0
    )


@pytest.mark.parametrize("case", ["empty_real", "missing_generator", "empty_generator", "bad_shots", "bad_learner"])
def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, case):
    real = make_scene_folder(tmp_path / "real", ("forest", "resident"), n=12, size=32)
    generator = make_scene_folder(tmp_path / "synthetic", ("forest", "resident"), n=2, size=32)
    extra = []
    if case == "empty_real":
        real = tmp_path / "empty"
        real.mkdir()
    elif case == "missing_generator":
        generator = tmp_path / "no-such-model"
    elif case == "empty_generator":
        generator = tmp_path / "empty-generator"
        generator.mkdir()
    elif case == "bad_shots":
        extra = ["--shots", "5,many"]
    else:
        extra = ["--learners", "resnet"]
    code = main(
        [
            "utility",
            "classify",
            "--real",
            str(real),
            "--generator",
            str(generator),
            "--out",
            str(tmp_path / "out"),
            *extra,
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("terrasynth: error:") and len(err.splitlines()) == 1
    named = {"empty_real": str(real), "missing_generator": str(generator), "empty_generator": str(generator)}
    if case in named:
        assert named[case] in err
