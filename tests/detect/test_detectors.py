import numpy as np
import pytest
from tests.detect.fake_tiles import make_sets

from terrasynth.detect.detector import DetectorConfig, build_detector, load_detector, train_detector
from terrasynth.detect.evaluate import detection_metrics, robustness_table
from terrasynth.detect.spectral import azimuthal_spectrum
from terrasynth.errors import InputError


def held_out_auc(detector, n=16):
    real, fake = make_sets(n, seed=99)
    labels = np.r_[np.zeros(n), np.ones(n)]
    return detection_metrics(labels, detector.score(real + fake))["auc"]


def test_azimuthal_spectrum_sees_upsampling():
    real, fake = make_sets(8)
    r = np.mean([azimuthal_spectrum(x, 16) for x in real], 0)
    f = np.mean([azimuthal_spectrum(x, 16) for x in fake], 0)
    assert r.shape == (17,) and np.isfinite(r).all()
    # Nearest ×2 up-sampling multiplies the spectrum by cos²(πf/2): the ring just below Nyquist collapses.
    assert (r[14] - r[8]) - (f[14] - f[8]) > 1.0


def test_spectral_detector_separates_and_round_trips(tiny_sets, tmp_path):
    real, fake = tiny_sets
    detector = build_detector(DetectorConfig(method="spectral", input_size=32, bins=16)).fit(real, fake)
    assert held_out_auc(detector) > 0.95
    detector.save(tmp_path / "det")
    loaded = load_detector(tmp_path / "det")
    probe = make_sets(4, seed=5)[0]
    assert np.allclose(loaded.score(probe), detector.score(probe))
    assert (tmp_path / "det" / "model.safetensors").is_file() and not list(tmp_path.glob("det/*.pt"))


def test_cnn_detector_trains_and_round_trips(tmp_path):
    real, fake = make_sets(12)
    config = DetectorConfig(method="cnn", input_size=32, epochs=2, batch_size=16, pretrained=False, max_tiles=1)
    detector = build_detector(config).fit(real, fake)
    scores = detector.score(real[:3] + fake[:3])
    assert scores.shape == (6,) and ((scores >= 0) & (scores <= 1)).all()
    detector.save(tmp_path / "cnn")
    assert np.allclose(load_detector(tmp_path / "cnn").score(real[:3]), scores[:3], atol=1e-5)


def test_operating_point_is_calibrated_on_held_back_real_images():
    real, fake = make_sets(60)
    detector = train_detector(DetectorConfig(input_size=32, bins=16), real, fake, calibration_fraction=0.5)
    assert "at most 1% false positives on 30 held-out real images" in detector.config.operating_point
    assert detector.threshold != 0.5


def test_tiles_cover_large_images_and_refuse_small_and_huge_ones():
    detector = build_detector(DetectorConfig(input_size=32, max_tiles=4, max_pixels=200 * 200))
    tiles = detector.tiles(np.zeros((150, 100, 3), np.uint8))
    assert 1 < len(tiles) <= 4 and all(t.shape == (32, 32, 3) for t in tiles)
    with pytest.raises(InputError, match="smaller than the detector input"):
        detector.tiles(np.zeros((20, 64, 3), np.uint8))
    with pytest.raises(InputError, match="pixel limit"):
        detector.tiles(np.zeros((300, 300, 3), np.uint8))


def test_robustness_table_has_a_row_per_perturbation(tiny_sets):
    real, fake = tiny_sets
    detector = build_detector(DetectorConfig(input_size=32, bins=16)).fit(real, fake)
    table = robustness_table(detector, real[:6], fake[:6], ["clean", "jpeg75", "resize0.5"])
    assert set(table) == {"clean", "jpeg75", "resize0.5"}
    assert set(table["clean"]) == {"auc", "accuracy", "tpr@1%fpr", "f1", "n"} and table["clean"]["n"] == 12


def test_a_calibrated_detector_is_scored_on_its_verdicts():
    """For the probe detector, accuracy counts what it calls synthetic, not score > threshold."""
    real, fake = make_sets(30, size=64, seed=1)
    detector = build_detector(DetectorConfig(method="probe", input_size=32, max_tiles=4)).fit(real, fake)
    detector.calibrate(make_sets(60, size=64, seed=2)[0])
    test_real, test_fake = make_sets(5, size=64, seed=3)
    table = robustness_table(detector, test_real, test_fake, ["clean"])
    verdicts = [detector.assess(x)["verdict"] == "synthetic" for x in test_real + test_fake]
    expected = np.mean(np.array(verdicts) == np.array([False] * 5 + [True] * 5))
    assert table["clean"]["accuracy"] == pytest.approx(expected)


def test_bad_detector_folders_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not a detector folder"):
        load_detector(tmp_path)
    build_detector(DetectorConfig(input_size=32, bins=16)).save(tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot load detector weights"):
        load_detector(tmp_path / "d")
    with pytest.raises(InputError, match="invalid DetectorConfig"):
        (tmp_path / "d" / "detector.json").write_text('{"method": "magic"}')
        load_detector(tmp_path / "d")


def test_shipped_detectors_load_and_score():
    """The detectors in the package (trained by benchmarks/detection.py) load from safetensors and score tiles."""
    from terrasynth.detect.detector import SHIPPED_DETECTORS, resolve_detector

    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    assert resolve_detector("default").config.method == "probe"
    for name in SHIPPED_DETECTORS:
        detector = resolve_detector(name)
        assert (
            "protocol" in detector.config.trained_on
            if name == "probe"
            else detector.config.trained_on["fake_jpeg"] == 95
        )
        score = detector.score([image])
        assert score.shape == (1,) and 0.0 <= float(score[0]) <= 1.0
