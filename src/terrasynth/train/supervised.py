"""Supervised training of the recognition models (segmenter, classifier) and their scores.

Short runs on a few hundred tiles: plain loops with AdamW, cosine decay, the 8 flips/rotations as
augmentation, and a seeded generator per run so results are reproducible for the seeds a study reports.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.transforms import rotate_flip
from ..models.recognition import Classifier, Segmenter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisedTrainConfig:
    steps: int = 600
    batch_size: int = 16
    learning_rate: float = 1e-3
    backbone_learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    crop: int | None = None  # random square crops of this size (None: whole images)
    seed: int = 0
    # Segmenters only. "balanced": cross-entropy weighted by median frequency / class frequency over the training
    # masks (Eigen & Fergus 2015), capped at max_class_weight; "none": plain cross-entropy.
    class_weighting: str = "none"
    max_class_weight: float = 10.0
    # Segmenters only: the share of crops centred on a pixel of a rare class (one of the image's rare classes,
    # drawn uniformly; a class is rare when under rare_class_share of the training pixels). Needs ``crop``.
    rare_crop_share: float = 0.0
    rare_class_share: float = 0.05

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.class_weighting not in ("none", "balanced"):
            raise ValueError(f"class_weighting must be 'none' or 'balanced', got {self.class_weighting!r}")
        if not 0 <= self.rare_crop_share <= 1 or not 0 < self.rare_class_share < 1:
            raise ValueError("rare_crop_share must be in [0, 1] and rare_class_share in (0, 1)")
        if self.max_class_weight < 1:
            raise ValueError("max_class_weight must be at least 1")


def _optimizer(model, config: SupervisedTrainConfig):
    backbone = [p for n, p in model.named_parameters() if n.startswith(("encoder.", "net.")) and p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    groups = [{"params": rest, "lr": config.learning_rate}]
    if backbone:
        lr = (
            config.backbone_learning_rate
            if isinstance(model, Segmenter) or model.head is not None
            else config.learning_rate
        )
        groups.append({"params": backbone, "lr": lr})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _batches(count: int, config: SupervisedTrainConfig, generator: torch.Generator):
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - config.batch_size + 1 if count >= config.batch_size else 1, config.batch_size):
            yield order[start : start + config.batch_size]


def _crop(images, targets, size, generator):
    if size is None or images.shape[-1] <= size:
        return images, targets
    top = int(torch.randint(0, images.shape[-2] - size + 1, (), generator=generator))
    left = int(torch.randint(0, images.shape[-1] - size + 1, (), generator=generator))
    images = images[..., top : top + size, left : left + size]
    if targets.dim() == 3:
        targets = targets[..., top : top + size, left : left + size]
    return images, targets


def class_frequencies(layouts: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each class's share of the pixels of ``layouts`` (N×H×W class ids)."""
    counts = torch.bincount(layouts.flatten().long(), minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp(min=1)


def median_frequency_weights(frequencies: torch.Tensor, cap: float = 10.0) -> torch.Tensor:
    """Median-frequency balancing (Eigen & Fergus 2015): weight_c = median(f) / f_c over the classes present,
    capped at ``cap``; an absent class gets weight 0 (it contributes no pixels anyway)."""
    present = frequencies > 0
    weights = torch.zeros_like(frequencies, dtype=torch.float32)
    if present.any():
        median = frequencies[present].median()
        weights[present] = (median / frequencies[present]).clamp(max=cap).float()
    return weights


def rare_crop_corners(
    layouts: torch.Tensor, rare: torch.Tensor, size: int, share: float, generator: torch.Generator
) -> list[tuple[int, int]]:
    """Top-left corners of ``size`` crops, one per layout: with probability ``share`` (and when the layout holds a
    class of ``rare``, a bool mask over classes) centred on a random pixel of one of its rare classes (the class
    drawn uniformly among those present, so buildings are not drowned by roads), else uniform."""
    height, width = layouts.shape[-2:]
    corners = []
    for layout in layouts:
        top = int(torch.randint(0, height - size + 1, (), generator=generator))
        left = int(torch.randint(0, width - size + 1, (), generator=generator))
        if share > 0 and float(torch.rand((), generator=generator)) < share:
            present = [c for c in torch.unique(layout).tolist() if 0 <= c < len(rare) and bool(rare[c])]
            if present:
                cls = present[int(torch.randint(0, len(present), (), generator=generator))]
                ys, xs = torch.nonzero(layout == cls, as_tuple=True)
                pick = int(torch.randint(0, len(ys), (), generator=generator))
                top = min(max(int(ys[pick]) - size // 2, 0), height - size)
                left = min(max(int(xs[pick]) - size // 2, 0), width - size)
        corners.append((top, left))
    return corners


def train_segmenter(
    model: Segmenter, images: torch.Tensor, layouts: torch.Tensor, config: SupervisedTrainConfig, progress: bool = False
) -> list[float]:
    """Train on ``images`` (N×3×H×W, [0, 1]) and ``layouts`` (N×H×W class ids); returns the loss curve.
    ``config.class_weighting`` and ``config.rare_crop_share`` turn on the class-balanced loss and the crops around
    rare classes."""
    layouts = layouts.long()
    weights, rare = None, None
    if config.class_weighting == "balanced" or config.rare_crop_share > 0:
        frequencies = class_frequencies(layouts, model.config.num_classes)
        if config.class_weighting == "balanced":
            weights = median_frequency_weights(frequencies, config.max_class_weight)
        rare = (frequencies > 0) & (frequencies < config.rare_class_share)
        log.info("class shares %s, loss weights %s, rare %s", frequencies.tolist(), weights, rare.tolist())
    return _train(model, images, layouts, config, progress, "segmenter", weights, rare)


def train_classifier(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, config: SupervisedTrainConfig, progress: bool = False
) -> list[float]:
    return _train(model, images, labels.long(), config, progress, "classifier")


def _train(model, images, targets, config, progress, name, weights=None, rare=None) -> list[float]:
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    model.train()
    losses = []
    batches = _batches(len(images), config, generator)
    for step in tqdm(range(config.steps), disable=not progress, desc=f"training {name}"):
        scale = 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * scale
        index = next(batches)
        if rare is not None and config.rare_crop_share > 0 and config.crop and images.shape[-1] > config.crop:
            size = config.crop
            corners = rare_crop_corners(targets[index], rare, size, config.rare_crop_share, generator)
            x = torch.stack([images[i, :, t : t + size, u : u + size] for i, (t, u) in zip(index, corners)]).float()
            y = torch.stack([targets[i, t : t + size, u : u + size] for i, (t, u) in zip(index, corners)])
        else:
            x, y = _crop(images[index].float(), targets[index], config.crop, generator)
        k, flip = int(torch.randint(0, 4, (), generator=generator)), bool(torch.rand((), generator=generator) < 0.5)
        x = rotate_flip(x, k, flip)
        if y.dim() == 3:
            y = rotate_flip(y, k, flip)
        loss = F.cross_entropy(model(x), y, weight=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    index = target.flatten().long() * num_classes + predicted.flatten().long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_scores(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict:
    """mIoU over classes present in the target or prediction, pixel accuracy and IoU per class."""
    matrix = confusion_matrix(predicted, target, num_classes).double()
    true_positive = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - true_positive
    iou = true_positive / union.clamp(min=1)
    present = union > 0
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / matrix.sum().clamp(min=1)),
        "iou_per_class": [float(v) if p else None for v, p in zip(iou, present)],
    }


@torch.no_grad()
def classification_accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 32
) -> float:
    model.eval()
    predicted = torch.cat(
        [model(images[i : i + batch_size].float()).argmax(1) for i in range(0, len(images), batch_size)]
    )
    return float((predicted == labels).float().mean())
