import numpy as np
import pytest

from terrasynth.detect.perturb import PERTURBATIONS, crop, jpeg, perturb, resize


def test_every_perturbation_returns_a_uint8_rgb_image():
    image = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    for name in PERTURBATIONS:
        out = perturb(image, name, seed=1)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, name
    assert resize(image, 0.5).shape == (32, 24, 3)
    assert crop(image, 0.5, seed=3).shape == (32, 24, 3)
    assert np.array_equal(perturb(image, "clean"), image)


def test_jpeg_lower_quality_loses_more():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    errors = [np.abs(jpeg(image, q).astype(int) - image).mean() for q in (95, 75, 50)]
    assert errors[0] < errors[1] < errors[2]


def test_unknown_perturbation_is_an_error():
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(np.zeros((8, 8, 3), np.uint8), "rotate")


def test_match_jpeg_removes_a_pure_file_format_signal():
    """Real tiles stored as JPEG and the same kind of tiles kept lossless: a detector separates them by format
    alone, unless the lossless set is re-encoded at the real set's quality first."""
    from tests.detect.fake_tiles import smooth_field

    from terrasynth.detect.detector import DetectorConfig, train_detector
    from terrasynth.detect.evaluate import roc_auc
    from terrasynth.detect.perturb import match_jpeg

    rng = np.random.default_rng(0)
    real = [jpeg(smooth_field(rng, noise=12.0), 75) for _ in range(60)]
    lossless = [smooth_field(rng, noise=12.0) for _ in range(60)]
    assert match_jpeg(lossless, None)[0] is lossless[0] and len(match_jpeg(lossless, 0)) == 60
    config = DetectorConfig(method="spectral", input_size=64, augment=False)
    aucs = {}
    for quality in (0, 75):
        fake = match_jpeg(lossless, quality)
        detector = train_detector(config, real[:40], fake[:40])
        labels = np.r_[np.zeros(20), np.ones(20)]
        aucs[quality] = roc_auc(labels, detector.score(real[40:] + fake[40:]))
    assert aucs[0] > 0.9, aucs
    assert aucs[75] < 0.8, aucs
