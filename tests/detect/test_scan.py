import csv

import numpy as np
from PIL import Image
from tests.detect.fake_tiles import make_sets, write_set

from terrasynth.cli import main
from terrasynth.detect.detector import DetectorConfig, build_detector
from terrasynth.detect.scan import scan_folder


def trained(tmp_path, **changes):
    real, fake = make_sets(16)
    config = DetectorConfig(input_size=32, bins=16, **changes)
    return build_detector(config).fit(real, fake).save(tmp_path / "detector")


def bad_folder(root):
    real, fake = make_sets(2, seed=7)
    write_set(root, real[:1] + fake[:1])  # 000.png real, 001.png synthetic
    (root / "notes.txt").write_text("not an image")
    (root / "fake.jpg").write_bytes(b"this is not a jpeg")
    good = root / "whole.jpg"
    Image.fromarray(real[1]).save(good, quality=90)
    (root / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "tiny.png")
    (root / "sub").mkdir()
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(root / "sub" / "huge.png")
    return root


def test_scan_reports_every_file_and_never_stops(tmp_path):
    from terrasynth.detect.detector import load_detector

    detector = load_detector(trained(tmp_path, max_pixels=200 * 200))
    rows = scan_folder(detector, bad_folder(tmp_path / "in"), tmp_path / "scan.csv")
    status = {row["file"].split("/in/")[1]: row["status"] for row in rows}
    assert status == {
        "000.png": "ok",
        "001.png": "ok",
        "whole.jpg": "ok",
        "notes.txt": "not_an_image",
        "fake.jpg": "not_an_image",
        "truncated.jpg": "unreadable",
        "tiny.png": "too_small",
        "sub/huge.png": "too_large",
    }
    with open(tmp_path / "scan.csv") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == 8
    assert set(written[0]) == {"file", "status", "score", "p_value", "verdict", "threshold", "detail"}
    verdicts = {r["file"].split("/in/")[1]: r["verdict"] for r in written if r["status"] == "ok"}
    assert verdicts["000.png"] == "real" and verdicts["001.png"] == "synthetic"
    assert all(r["detail"] for r in written if r["status"] != "ok")


def test_detect_cli_train_eval_scan(tmp_path, capsys):
    real, fake = make_sets(30)
    write_set(tmp_path / "real", real)
    write_set(tmp_path / "fake", fake)
    config = tmp_path / "config.json"
    config.write_text('{"input_size": 32, "bins": 16}')
    out = tmp_path / "det"
    args = ["--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake")]
    assert main(["detect", "train", *args, "--out", str(out), "--config", str(config), "-q"]) == 0
    assert "operating point: threshold" in capsys.readouterr().out
    assert main(["detect", "eval", "--detector", str(out), *args, "--perturb", "clean", "--perturb", "jpeg75"]) == 0
    printed = capsys.readouterr().out
    assert "clean" in printed and "jpeg75" in printed and "resize0.5" not in printed
    bad_folder(tmp_path / "in")
    assert main(["detect", "scan", str(tmp_path / "in"), "--detector", str(out), "--out", str(tmp_path / "s.csv")]) == 0
    printed = capsys.readouterr().out
    assert "8 files scanned" in printed and "not_an_image 2" in printed and "unreadable 1" in printed


def test_detect_cli_errors_are_one_line(tmp_path, capsys):
    images = write_set(tmp_path / "in", make_sets(1)[0])
    assert main(["detect", "scan", str(images), "--detector", str(tmp_path / "missing"), "--out", "x.csv"]) == 2
    assert "not a detector folder" in capsys.readouterr().err
    assert main(["detect", "scan", str(tmp_path / "nope"), "--detector", str(trained(tmp_path)), "--out", "x.csv"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    out = tmp_path / "empty.csv"
    assert (
        main(["detect", "scan", str(tmp_path / "empty"), "--detector", str(tmp_path / "detector"), "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no files to scan" in err[0] and not out.exists()


def test_scan_of_one_file_scores_it(tmp_path, capsys):
    images = write_set(tmp_path / "in", make_sets(2)[0])
    out = tmp_path / "one.csv"
    one = images / "000.png"
    assert main(["detect", "scan", str(one), "--detector", str(trained(tmp_path)), "--out", str(out)]) == 0
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == [str(one)] and rows[0]["status"] == "ok"
    assert (
        main(
            [
                "detect",
                "eval",
                "--detector",
                str(tmp_path / "detector"),
                "--real",
                str(tmp_path),
                "--fake",
                str(tmp_path),
                "--perturb",
                "rotate",
            ]
        )
        == 2
    )
    assert "unknown perturbation" in capsys.readouterr().err
