"""Metrics against reference implementations: FD against scipy's matrix square root, SSIM and PSNR against
scikit-image, segmentation scores against scikit-learn's confusion matrix and Jaccard index."""

import numpy as np
import pytest
import scipy.linalg
import skimage.metrics as skimage_metrics
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score

from terrasynth.evaluate.metrics import frechet_distance
from terrasynth.evaluate.paired import psnr, ssim
from terrasynth.train.supervised import confusion_matrix, segmentation_scores


def reference_frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


@pytest.mark.parametrize("dim, shift", [(8, 0.0), (16, 0.5), (32, 2.0)])
def test_frechet_distance_matches_scipy_sqrtm(dim, shift):
    rng = np.random.default_rng(dim)
    mixing = rng.normal(size=(dim, dim))
    x = rng.normal(size=(400, dim)) @ mixing
    y = rng.normal(size=(300, dim)) @ (mixing + 0.3 * rng.normal(size=(dim, dim))) + shift
    assert frechet_distance(x, y) == pytest.approx(reference_frechet(x, y), rel=1e-6, abs=1e-8)


def _pair(seed: int, size=(3, 40, 56)):
    rng = np.random.default_rng(seed)
    a = rng.random(size)
    b = np.clip(a + rng.normal(0, 0.1, size), 0, 1)
    return a, b


@pytest.mark.parametrize("seed", range(3))
def test_ssim_matches_scikit_image(seed):
    a, b = _pair(seed)
    ours = float(ssim(torch.tensor(a)[None], torch.tensor(b)[None])[0])
    reference = skimage_metrics.structural_similarity(
        a, b, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ours == pytest.approx(reference, abs=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_psnr_matches_scikit_image(seed):
    a, b = _pair(seed)
    ours = float(psnr(torch.tensor(a)[None], torch.tensor(b)[None])[0])
    assert ours == pytest.approx(skimage_metrics.peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-4)


def test_segmentation_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    classes = 5
    target = rng.integers(0, classes - 1, (4, 32, 32))  # the last class never occurs in the target
    predicted = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, classes, target.shape))
    matrix = confusion_matrix(torch.tensor(predicted), torch.tensor(target), classes).numpy()
    assert (matrix == sk_confusion_matrix(target.ravel(), predicted.ravel(), labels=range(classes))).all()
    scores = segmentation_scores(torch.tensor(predicted), torch.tensor(target), classes)
    present = sorted(set(target.ravel()) | set(predicted.ravel()))
    per_class = jaccard_score(target.ravel(), predicted.ravel(), labels=present, average=None)
    assert scores["miou"] == pytest.approx(per_class.mean())
    assert [scores["iou_per_class"][c] for c in present] == pytest.approx(list(per_class))
    assert scores["pixel_accuracy"] == pytest.approx((target == predicted).mean())
