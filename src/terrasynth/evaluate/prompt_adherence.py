"""Prompt adherence for text-only generation: a scene classifier trained on real tiles labels images generated
for each scene prompt, and its accuracy on them is compared with its accuracy on real tiles of those scenes (the
ceiling: the classifier's own error). An offline analogue of CLIPScore, which needs no CLIP weights."""

from __future__ import annotations

import torch


def class_accuracies(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Overall accuracy, and accuracy per class over the items whose label is that class (None when a class
    has no item). ``predicted``/``labels``: N class ids."""
    predicted, labels = torch.as_tensor(predicted).long().flatten(), torch.as_tensor(labels).long().flatten()
    if predicted.shape != labels.shape or len(labels) == 0:
        raise ValueError(f"need as many predictions as labels (at least 1), got {len(predicted)} and {len(labels)}")
    correct = (predicted == labels).double()
    per_class = []
    for c in range(num_classes):
        chosen = labels == c
        per_class.append(float(correct[chosen].mean()) if chosen.any() else None)
    return {"accuracy": float(correct.mean()), "per_class": per_class, "n": len(labels)}


def adherence_ratio(generated: dict, real: dict) -> float:
    """Generated ÷ real accuracy, each the mean of per-class accuracies over the classes both sets hold (so a
    class with more real tiles does not weigh more)."""
    pairs = [(g, r) for g, r in zip(generated["per_class"], real["per_class"]) if g is not None and r is not None]
    if not pairs:
        raise ValueError("no class is present in both sets")
    real_mean = sum(r for _, r in pairs) / len(pairs)
    if real_mean == 0:
        raise ValueError("the classifier gets no real tile right: the ratio is undefined")
    return (sum(g for g, _ in pairs) / len(pairs)) / real_mean
