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
