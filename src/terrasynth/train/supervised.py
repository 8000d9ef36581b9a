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

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")


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


def train_segmenter(
    model: Segmenter, images: torch.Tensor, layouts: torch.Tensor, config: SupervisedTrainConfig, progress: bool = False
) -> list[float]:
    """Train on ``images`` (N×3×H×W, [0, 1]) and ``layouts`` (N×H×W class ids); returns the loss curve."""
    return _train(model, images, layouts.long(), config, progress, "segmenter")


def train_classifier(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, config: SupervisedTrainConfig, progress: bool = False
) -> list[float]:
    return _train(model, images, labels.long(), config, progress, "classifier")


def _train(model, images, targets, config, progress, name) -> list[float]:
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
        x, y = _crop(images[index].float(), targets[index], config.crop, generator)
        k, flip = int(torch.randint(0, 4, (), generator=generator)), bool(torch.rand((), generator=generator) < 0.5)
        x = rotate_flip(x, k, flip)
        if y.dim() == 3:
            y = rotate_flip(y, k, flip)
        loss = F.cross_entropy(model(x), y)
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
