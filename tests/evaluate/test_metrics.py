import numpy as np
import pytest

from terrasynth.errors import InputError
from terrasynth.evaluate.metrics import (
    density_coverage,
    feature_statistics,
    frechet_distance,
    inception_score_analogue,
    kid,
    precision_recall,
)


def features(n=200, d=8, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_frechet_distance_zero_for_same_set_and_grows_with_shift():
    x = features()
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    near = frechet_distance(x, features(seed=1))
    far = frechet_distance(x, features(seed=1, shift=1.0))
    assert far > near > 0
    assert far == pytest.approx(8.0, rel=0.3)  # ‖Δμ‖² = 8 for a unit shift in 8 dimensions


def test_frechet_distance_accepts_statistics():
    x, y = features(), features(seed=1, shift=0.5)
    assert frechet_distance(feature_statistics(x), feature_statistics(y)) == pytest.approx(frechet_distance(x, y))


def test_kid_unbiased_near_zero_for_same_distribution_and_positive_for_shift():
    same = kid(features(seed=0), features(seed=1), subsets=20, subset_size=100)
    shifted = kid(features(seed=0), features(seed=1, shift=1.0), subsets=20, subset_size=100)
    assert abs(same["mean"]) < 3 * same["std"] + 0.01
    assert shifted["mean"] > 10 * abs(same["mean"])
    assert shifted["std"] > 0 and same["subset_size"] == 100 and same["subsets"] == 20


def test_precision_recall_identical_and_disjoint():
    x = features()
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0, "k": 3}
    far = precision_recall(x, features(seed=1, shift=20.0))
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_density_coverage_sanity():
    x = features()
    same = density_coverage(x, features(seed=1))
    assert 0.7 < same["density"] < 1.3 and same["coverage"] > 0.8
    collapsed = density_coverage(x, np.repeat(x[:1], 50, axis=0))  # mode collapse onto one real sample
    assert collapsed["coverage"] < 0.1
    far = density_coverage(x, features(seed=1, shift=20.0))
    assert far["density"] == 0.0 and far["coverage"] == 0.0


def test_inception_score_analogue_bounds():
    confident = np.eye(5)[np.arange(100) % 5]  # confident and diverse: IS = number of classes
    assert inception_score_analogue(confident)["mean"] == pytest.approx(5.0, rel=1e-3)
    uniform = np.full((100, 5), 0.2)
    assert inception_score_analogue(uniform)["mean"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, minimum",
    [
        (lambda x: frechet_distance(x[:1], x), "at least 2"),
        (lambda x: kid(x[:1], x), "at least 2"),
        (lambda x: precision_recall(x[:3], x, k=3), "at least 4"),
        (lambda x: density_coverage(x[:5], x, k=5), "at least 6"),
    ],
)
def test_too_few_samples_names_the_minimum(call, minimum):
    with pytest.raises(InputError, match=minimum):
        call(features(20))


def test_frechet_distance_retries_an_eigensolver_that_fails_to_converge(monkeypatch):
    """LAPACK may fail on a covariance of fewer samples than features; the retry with a tiny diagonal must give
    the distance the solver gives when it converges."""
    import torch

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(12, 64)), rng.normal(0.5, 1, size=(12, 64))
    expected = frechet_distance(real, fake)
    solvers = {"eigh": torch.linalg.eigh, "eigvalsh": torch.linalg.eigvalsh}
    failures = []

    def failing_once(name):
        def solve(matrix):
            if len(failures) < 2 and name not in failures:
                failures.append(name)
                raise torch.linalg.LinAlgError("failed to converge")
            return solvers[name](matrix)

        return solve

    monkeypatch.setattr(torch.linalg, "eigh", failing_once("eigh"))
    monkeypatch.setattr(torch.linalg, "eigvalsh", failing_once("eigvalsh"))
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    assert failures == ["eigh", "eigvalsh"]  # both solves failed once and were retried
