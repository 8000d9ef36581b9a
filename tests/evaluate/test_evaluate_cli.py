"""``terrasynth evaluate`` end to end on tiny fake folders, and the bad-input paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.fakes import write_rgb

from terrasynth.cli import main
from terrasynth.errors import InputError
from terrasynth.evaluate.features import load_image_set


def write_folder(folder, n, size=32, seed=0, shift=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_rgb(folder / f"{i:04d}.png", np.clip(rng.integers(0, 200, (size, size, 3)) + shift, 0, 255))
    return folder


def test_unreadable_files_are_skipped_with_a_count_or_fail_with_strict(tmp_path):
    folder = write_folder(tmp_path / "real", 3)
    (folder / "broken.png").write_bytes(b"not a png")
    images = load_image_set(folder)
    assert len(images) == 3 and len(images.skipped) == 1 and images.summary()["skipped"] == 1
    with pytest.raises(InputError, match="broken.png"):
        load_image_set(folder, strict=True)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        load_image_set(tmp_path / "empty")


def test_cli_writes_metrics_and_report_with_floor_and_notes(tmp_path, capsys):
    real = write_folder(tmp_path / "real", 12, seed=0)
    fake = write_folder(tmp_path / "fake", 6, seed=1, shift=40)
    write_rgb(fake / "0099.png", np.zeros((48, 40, 3), np.uint8))  # a different size: resized, with a note
    (real / "broken.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "report"
    code = main(
        ["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(out), "--pairs", "--kid-subsets", "5"]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "report.html").read_text().count("real vs real (floor)") >= 1
    floor, generated = metrics["rows"]["real vs real (floor)"], metrics["rows"]["generated"]
    fd = generated["FD_effnet"]
    assert fd["extractor"] == "effnet" and fd["resize"] == "bilinear-antialias" and fd["n_real"] == 6
    assert fd["n_fake"] == 6 and floor["FD_effnet"]["n_fake"] == 6
    assert "std" in generated["KID_effnet"] and "SSIM" in generated and "perceptual_effnet" in generated
    assert metrics["ratios"]["generated"]["FD_effnet"] > 1
    notes = " ".join(metrics["notes"])
    assert "skipped 1 unreadable" in notes and "mixed sizes" in notes and "resized" in notes
    printed = capsys.readouterr().out
    assert "FD_effnet" in printed and "metrics.json" in printed


def test_cli_strict_and_too_few_images_exit_2(tmp_path, capsys):
    real = write_folder(tmp_path / "real", 12)
    fake = write_folder(tmp_path / "fake", 3)
    assert main(["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "o")]) == 2
    assert "at least 6" in capsys.readouterr().err
    fake = write_folder(tmp_path / "fake2", 6)
    (fake / "bad.jpg").write_bytes(b"")
    assert main(["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "o"), "--strict"]) == 2
    assert "bad.jpg" in capsys.readouterr().err


def test_train_segmenter_and_domain_then_evaluate_layout_fidelity(tmp_path, capsys):
    from tests.fakes import make_paired_tiles, make_scene_folder

    pairs = make_paired_tiles(tmp_path / "pairs", n=12, size=32)
    scenes = make_scene_folder(tmp_path / "scenes", n=3, size=32)
    common = ["--size", "32", "--steps", "1", "--batch-size", "2", "--train-split", "all", "--val-split", "all", "-q"]
    assert main(["train-segmenter", "--paired", str(pairs), "--out", str(tmp_path / "seg"), *common]) == 0
    assert main(["train-domain", "--scenes", str(scenes), "--out", str(tmp_path / "dom"), *common]) == 0
    assert '"val_miou"' in capsys.readouterr().out
    real = write_folder(tmp_path / "real", 12, seed=3)  # held-out real tiles, named like the layouts
    code = main(
        [
            "evaluate",
            "--real",
            str(real),
            "--fake",
            str(pairs / "images"),
            "--out",
            str(tmp_path / "r"),
            "--layouts",
            str(pairs / "masks"),
            "--segmenter",
            str(tmp_path / "seg"),
            "--features",
            "effnet,domain",
            "--domain-encoder",
            str(tmp_path / "dom"),
            "--train",
            str(pairs / "images"),
            "--kid-subsets",
            "2",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    generated = metrics["rows"]["generated"]
    assert 0 <= generated["mIoU"]["value"] <= 1 and "FD_domain" in generated and "IS_domain" in generated
    per_class = generated["mIoU"]["iou_per_class"]
    assert list(per_class) == ["background", "building", "woodland", "water", "road"]
    present = [v for v in per_class.values() if v is not None]
    assert present and generated["mIoU"]["value"] == pytest.approx(sum(present) / len(present))
    assert generated["memorised_fraction"]["value"] == 1.0  # the "generated" set is the training set itself
    assert metrics["memorisation"]["flagged_files"][0][0] == metrics["memorisation"]["flagged_files"][0][1]
