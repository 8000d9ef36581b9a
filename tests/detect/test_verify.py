"""Generated files carry the watermark by default; ``verify`` reads metadata, watermark and detector together."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tests.detect.fake_tiles import make_sets, smooth_field
from tests.fakes import make_provenance_record

from terrasynth.cli import build_parser, main
from terrasynth.detect.detector import DetectorConfig, build_detector
from terrasynth.detect.perturb import jpeg
from terrasynth.detect.verify import verify_file
from terrasynth.generate.outputs import write_generated
from terrasynth.generate.provenance import ProvenanceRecord, read_provenance
from terrasynth.generate.watermark import read_watermark, record_payload


def record(seed: int, size: int = 128) -> ProvenanceRecord:
    return make_provenance_record(seed, size)


def images(n: int, size: int = 128) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.stack([torch.from_numpy(smooth_field(rng, size, 2.0, 16)).permute(2, 0, 1) / 255.0 for _ in range(n)])


def test_generated_files_carry_the_watermark_named_in_their_record(tmp_path):
    paths = write_generated(images(2), [record(1), record(2)], tmp_path)
    for path in paths:
        rec = read_provenance(path)
        assert rec.watermark == f"ts-sync-v2:{record_payload(rec):010x}"
        reading = read_watermark(np.asarray(Image.open(path).convert("RGB")))
        assert reading.payload == record_payload(rec)
    first, second = (read_provenance(p).watermark for p in paths)
    assert first != second  # the payload hashes each record


def test_images_too_small_for_the_default_mark_carry_the_earlier_one(tmp_path):
    path = write_generated(images(1, size=64), [record(3, size=64)], tmp_path)[0]
    rec = read_provenance(path)
    assert rec.watermark == f"ts-dct-iss-v1:{record_payload(rec):010x}"
    stripped = tmp_path / "stripped.png"
    Image.open(path).convert("RGB").save(stripped)  # no metadata: verify tries the schemes the size allows
    result = verify_file(stripped)
    assert result["watermark"]["valid"] and result["watermark"]["scheme"] == "ts-dct-iss-v1"


def test_the_same_record_gives_the_same_pixels_whatever_the_time(tmp_path):
    import dataclasses

    a = write_generated(images(1), [record(1)], tmp_path / "a")[0]
    later = dataclasses.replace(record(1), created="2026-06-01T12:00:00+00:00")
    b = write_generated(images(1), [later], tmp_path / "b")[0]
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_no_watermark_is_recorded(tmp_path):
    path = write_generated(images(1), [record(1)], tmp_path, watermark=False)[0]
    assert read_provenance(path).watermark == "none"
    assert not read_watermark(np.asarray(Image.open(path).convert("RGB"))).valid
    tiny = write_generated(images(1, 8), [record(1, 8)], tmp_path / "tiny")[0]
    assert read_provenance(tiny).watermark == "none" and "watermark_skipped" in read_provenance(tiny).extra


def test_generate_has_a_no_watermark_flag():
    args = build_parser().parse_args(["generate", "--out", "x", "--no-watermark"])
    assert args.no_watermark is True
    assert build_parser().parse_args(["generate", "--out", "x"]).no_watermark is False


def test_verify_reports_metadata_watermark_and_detector(tmp_path, capsys):
    path = write_generated(images(1), [record(3)], tmp_path)[0]
    real, fake = make_sets(16)
    detector_dir = build_detector(DetectorConfig(input_size=32, bins=16)).fit(real, fake).save(tmp_path / "det")
    assert main(["verify", str(path), "--detector", str(detector_dir)]) == 0
    out = capsys.readouterr().out
    assert "provenance: synthetic=True model=default" in out
    assert "bit accuracy 1.000 vs the record, matches record: True" in out
    assert "detector (spectral): score" in out and "summary: metadata says synthetic; watermark found" in out

    # Metadata stripped and re-encoded as JPEG 75: the watermark still says where the image came from.
    stripped = tmp_path / "stripped.jpg"
    Image.fromarray(jpeg(np.asarray(Image.open(path).convert("RGB")), 75)).save(stripped, quality=95)
    result = verify_file(stripped)
    assert result["provenance"] is None and result["watermark"]["valid"]
    assert result["watermark"]["payload"] == f"{record_payload(read_provenance(path)):010x}"
    assert main(["verify", str(stripped), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["watermark"]["valid"] is True


def test_verify_of_a_real_image_and_of_bad_files(tmp_path, capsys):
    real = tmp_path / "real.png"
    Image.fromarray(make_sets(1, 128)[0][0]).save(real)
    assert main(["verify", str(real)]) == 0
    out = capsys.readouterr().out
    assert "no provenance metadata; no valid watermark" in out
    # the shipped detector's p-values describe its own real tiles, and verify says how to calibrate for others
    assert "detector (probe)" in out and "terrasynth detect calibrate" in out
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["verify", str(tmp_path / "bad.png")]) == 2
    assert "bad.png: not an image file" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["file.png"])
def test_verify_missing_file(tmp_path, capsys, missing):
    assert main(["verify", str(tmp_path / missing)]) == 2
    assert "file not found" in capsys.readouterr().err
