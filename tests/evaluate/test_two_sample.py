"""The classifier two-sample test: chance on one distribution, near 1 on two far-apart ones."""

from __future__ import annotations

import numpy as np
import pytest

from terrasynth.evaluate.two_sample import c2st_auc


def test_same_distribution_scores_near_chance():
    rng = np.random.default_rng(0)
    result = c2st_auc(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), repeats=3)
    assert abs(result["auc"] - 0.5) < 0.1 and result["n_a"] == result["n_b"] == 200


def test_shifted_distribution_is_found():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 8))
    b = rng.normal(size=(60, 8)) + np.r_[3.0, np.zeros(7)]
    result = c2st_auc(a, b, repeats=2)
    assert result["auc"] > 0.95 and result["auc_std"] >= 0


def test_paired_halves_keep_pairs_together_and_are_reproducible():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 4)), rng.normal(size=(20, 4)) + 1
    assert c2st_auc(a, b, paired=True, seed=3) == c2st_auc(a, b, paired=True, seed=3)
    with pytest.raises(ValueError, match="same size"):
        c2st_auc(a, b[:10], paired=True)
    with pytest.raises(ValueError, match="at least 4"):
        c2st_auc(a[:3], b)
