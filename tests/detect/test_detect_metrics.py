import numpy as np

from terrasynth.detect.evaluate import detection_metrics, threshold_at_fpr, tpr_at_fpr


def test_perfect_scores():
    labels = np.array([0] * 50 + [1] * 50)
    scores = np.r_[np.linspace(0, 0.4, 50), np.linspace(0.6, 1, 50)]
    m = detection_metrics(labels, scores)
    assert m["auc"] == 1.0 and m["accuracy"] == 1.0 and m["tpr@1%fpr"] == 1.0 and m["f1"] == 1.0 and m["n"] == 100


def test_random_scores_have_auc_near_half():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    m = detection_metrics(labels, rng.random(4000))
    assert abs(m["auc"] - 0.5) < 0.05 and m["tpr@1%fpr"] < 0.05


def test_threshold_at_fpr_flags_at_most_that_share_of_real():
    real = np.random.default_rng(1).random(1000)
    threshold = threshold_at_fpr(real, 0.01)
    assert np.mean(real > threshold) <= 0.01
    assert tpr_at_fpr(np.array([0] * 1000 + [1]), np.r_[real, 2.0]) == 1.0
