"""Detector metrics as pure functions of scores and labels (1 = synthetic), and robustness tables."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """True-positive rate at the threshold where at most ``fpr`` of the real images are flagged."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    real, fake = scores[labels == 0], scores[labels == 1]
    if len(real) == 0 or len(fake) == 0:
        return float("nan")
    threshold = threshold_at_fpr(real, fpr)
    return float(np.mean(fake > threshold))


def threshold_at_fpr(real_scores: np.ndarray, fpr: float = 0.01) -> float:
    """The smallest threshold that flags at most ``fpr`` of ``real_scores`` (score > threshold → synthetic)."""
    real = np.sort(np.asarray(real_scores, dtype=np.float64))
    allowed = int(np.floor(fpr * len(real)))
    return float(real[len(real) - 1 - allowed]) if allowed < len(real) else float("-inf")


def detection_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5, predicted: np.ndarray | None = None
) -> dict[str, float]:
    """AUC, accuracy and F1 at ``threshold`` (or of the given ``predicted`` synthetic calls), TPR at 1 % FPR, and N."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    predicted = scores > threshold if predicted is None else np.asarray(predicted, bool)
    tp = float(np.sum(predicted & (labels == 1)))
    fp = float(np.sum(predicted & (labels == 0)))
    fn = float(np.sum(~predicted & (labels == 1)))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else float("nan")
    return {
        "auc": roc_auc(labels, scores),
        "accuracy": float(np.mean(predicted == (labels == 1))),
        "tpr@1%fpr": tpr_at_fpr(labels, scores, 0.01),
        "f1": f1,
        "n": int(len(labels)),
    }


def robustness_table(
    detector, real: list[np.ndarray], fake: list[np.ndarray], perturbations: list[str], seed: int = 0
) -> dict[str, dict[str, float]]:
    """``{perturbation: detection_metrics}`` of ``detector`` on held-out real and fake uint8 images. A calibrated
    detector (one that answers with verdicts, ``probe``) is scored on its verdicts: accuracy and F1 count the
    images it calls *synthetic*, since its score ranks and decides nothing."""
    from .perturb import perturb

    table = {}
    labels = np.array([0] * len(real) + [1] * len(fake))
    for name in perturbations:
        images = [perturb(x, name, seed + i) for i, x in enumerate(real + fake)]
        if hasattr(detector, "assess"):
            answers = [detector.assess(x) for x in images]
            scores = np.array([a["score"] for a in answers])
            predicted = np.array([a["verdict"] == "synthetic" for a in answers])
            table[name] = detection_metrics(labels, scores, predicted=predicted)
        else:
            table[name] = detection_metrics(labels, detector.score(images), detector.threshold)
    return table
