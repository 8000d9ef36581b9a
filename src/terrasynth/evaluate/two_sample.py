"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab, ICLR 2017): can a fresh classifier tell two image sets
apart? A logistic regression on frozen features is trained on one half of each set and scored by ROC AUC on the
other half, then the halves swap; 0.5 means the sets cannot be told apart by a linear probe on those features.

Paired sets (a generated image and the real tile of the same layout) keep each pair in the same half, so the
probe cannot win by recognising a layout it saw in training.
"""

from __future__ import annotations

import numpy as np


def c2st_auc(
    features_a: np.ndarray,
    features_b: np.ndarray,
    paired: bool = False,
    repeats: int = 5,
    seed: int = 0,
    regularisation: float = 1.0,
) -> dict:
    """Mean ROC AUC (set B scored as positive) of a standardised logistic regression trained on a random half
    of each set and tested on the other half, both ways round, over ``repeats`` random halvings.

    ``features_a``/``features_b``: N×D arrays (e.g. EfficientNet-Lite0 pooled features). ``paired``: row i of
    both sets belongs together (same layout) and goes to the same half; the sets must then have the same N.
    Returns ``{"auc", "auc_std", "n_a", "n_b", "repeats"}`` (std over the 2 × ``repeats`` half-splits)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two N×D feature arrays of the same D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 4:
        raise ValueError(f"C2ST needs at least 4 items per set, got {len(a)} and {len(b)}")
    if paired and len(a) != len(b):
        raise ValueError(f"paired sets must have the same size, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(repeats):
        order_a = rng.permutation(len(a))
        order_b = order_a if paired else rng.permutation(len(b))
        halves_a = np.array_split(order_a, 2)
        halves_b = np.array_split(order_b, 2)
        for train, test in ((0, 1), (1, 0)):
            x_train = np.concatenate([a[halves_a[train]], b[halves_b[train]]])
            y_train = np.r_[np.zeros(len(halves_a[train])), np.ones(len(halves_b[train]))]
            x_test = np.concatenate([a[halves_a[test]], b[halves_b[test]]])
            y_test = np.r_[np.zeros(len(halves_a[test])), np.ones(len(halves_b[test]))]
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=2000))
            probe.fit(x_train, y_train)
            aucs.append(roc_auc_score(y_test, probe.predict_proba(x_test)[:, 1]))
    return {
        "auc": float(np.mean(aucs)),
        "auc_std": float(np.std(aucs)),
        "n_a": len(a),
        "n_b": len(b),
        "repeats": repeats,
    }
