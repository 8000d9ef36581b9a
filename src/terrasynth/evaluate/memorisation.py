"""Memorisation: is a generated image a copy of a training image?

For each generated image, the distance (in a feature space, EfficientNet-Lite0 by default) to its nearest
training image is compared with the same distance for held-out real images — how close a genuinely new real
tile comes to the training set. A generated image at most as far from a training image as the ``quantile`` (1 %
by default) of those real-to-train distances is flagged as a likely copy (an exact copy always is). Without
held-out images, the reference is each training image's distance to its nearest other training image.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def _nearest(query: np.ndarray, bank: np.ndarray, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    q = torch.as_tensor(np.asarray(query), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(bank), dtype=torch.float64)
    distances = torch.cdist(q, b)
    if exclude_self:
        distances.fill_diagonal_(float("inf"))
    values, indices = distances.min(1)
    return values.numpy(), indices.numpy()


def memorisation_scores(train_features, fake_features, heldout_features=None, quantile: float = 0.01) -> dict:
    """``{"threshold", "reference", "quantile", "flagged_fraction", "flagged": [(fake index, train index,
    distance)], "fake_nn_median", "reference_nn_median", "ratio_median"}``."""
    if not 0 < quantile < 1:
        raise InputError(None, f"the memorisation quantile must be in (0, 1), got {quantile}")
    train = np.asarray(train_features)
    if len(train) < 2:
        raise InputError(None, f"memorisation needs at least 2 training images, got {len(train)}")
    if heldout_features is not None and len(heldout_features):
        reference, _ = _nearest(heldout_features, train)
        reference_name = "held-out real to nearest training image"
    else:
        reference, _ = _nearest(train, train, exclude_self=True)
        reference_name = "training image to nearest other training image"
    # a tolerance for float noise: the same image in another batch gets features equal only to ~1e-6
    tolerance = 1e-4 * float(np.linalg.norm(train, axis=1).mean())
    threshold = float(np.quantile(reference, quantile)) + tolerance
    distances, nearest = _nearest(fake_features, train)
    flagged = [(int(i), int(nearest[i]), float(distances[i])) for i in np.flatnonzero(distances <= threshold)]
    return {
        "quantile": quantile,
        "reference": reference_name,
        "threshold": threshold,
        "n_fake": int(len(distances)),
        "n_train": int(len(train)),
        "flagged_fraction": float(len(flagged) / max(len(distances), 1)),
        "flagged": flagged,
        "fake_nn_median": float(np.median(distances)),
        "reference_nn_median": float(np.median(reference)),
        "ratio_median": float(np.median(distances) / max(np.median(reference), 1e-12)),
    }
