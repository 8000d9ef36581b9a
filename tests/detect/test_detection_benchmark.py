"""benchmarks/detection.py end to end on tiny fake sets: both detectors, every perturbation, the cross-generator
matrix, and the watermark figures."""

import numpy as np
from benchmarks.detection import main
from PIL import Image
from tests.detect.fake_tiles import make_sets, write_set


def test_detection_benchmark_runs_end_to_end(tmp_path, capsys):
    real, fake = make_sets(16)
    rng = np.random.default_rng(3)
    bilinear = [
        np.asarray(Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).resize((64, 64), Image.BILINEAR))
        for _ in range(16)
    ]
    write_set(tmp_path / "real", real)
    write_set(tmp_path / "nearest", fake)
    write_set(tmp_path / "bilinear", bilinear)
    figures = main(
        [
            "--real",
            str(tmp_path / "real"),
            "--fake",
            f"nearest={tmp_path / 'nearest'}",
            "--fake",
            str(tmp_path / "bilinear"),
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--no-pretrained",
            "--watermark-n",
            "6",
            "--watermark-robust-n",
            "3",
            "--json",
            str(tmp_path / "figures.json"),
            "--save-detectors",
            str(tmp_path / "detectors"),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert out.startswith("command: python benchmarks/detection.py --real")
    assert set(figures["detector"]) == {"spectral", "cnn"}
    spectral = figures["detector"]["spectral"]
    assert set(spectral["table"]) >= {
        "clean",
        "jpeg95",
        "jpeg75",
        "jpeg50",
        "resize0.5",
        "resize0.75",
        "blur1",
        "crop0.8",
    }
    assert set(spectral["cross_generator_auc"]) == {"nearest", "bilinear"}
    assert set(spectral["cross_generator_auc"]["nearest"]) == {"nearest", "bilinear"}
    assert spectral["table"]["clean"]["auc"] > 0.9
    watermark = figures["watermark"]["ts-dct-iss-v1"]
    assert watermark["perturbations"]["clean"]["bit_accuracy"] == 1.0
    assert watermark["false_positives"]["clean"]["hits"] == 0
    assert "cross-generator AUC" in out and "target detector AUC clean >= 0.99" in out
    assert (tmp_path / "figures.json").is_file()
    assert "re-encoded as JPEG q95" in out
    # The saved pooled detectors are the ones the table describes: same scores on the same images.
    from terrasynth.detect.detector import load_detector

    saved = load_detector(tmp_path / "detectors" / "spectral")
    assert saved.config.trained_on["fake_jpeg"] == 95
    assert set(saved.config.trained_on["fake"]) == {"nearest", "bilinear"}
    assert saved.threshold == figures["detector"]["spectral"]["threshold"]


def test_detection_benchmark_generates_unwatermarked_sets(tmp_path, capsys, monkeypatch):
    from tests.fake_models import FakeTextEncoder, save_tiny_model
    from tests.fakes import make_paired_tiles

    from terrasynth.generate.provenance import read_provenance

    monkeypatch.setattr("terrasynth.models.text.default_text_encoder", lambda: FakeTextEncoder())
    model = save_tiny_model(tmp_path / "tiny")
    pairs = make_paired_tiles(tmp_path / "pairs", n=8, size=32)
    figures = main(
        [
            "--real",
            str(pairs / "images"),
            "--generate",
            "--generate-spec",
            f"{model}:ddim:2",
            "--layouts",
            str(pairs),
            "--generate-dir",
            str(tmp_path / "sets"),
            "--generate-limit",
            "5",
            "--methods",
            "spectral",
            "--input-size",
            "16",
            "--skip-watermark",
            "-q",
        ]
    )
    generated = sorted((tmp_path / "sets" / "tiny-ddim-2-nowm").glob("*.png"))
    assert len(generated) == 5 and read_provenance(generated[0]).watermark == "none"
    assert list(figures["detector"]["spectral"]["cross_generator_auc"]) == ["tiny-ddim-2"]
