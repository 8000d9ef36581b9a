"""The recognition models the evaluation ships: the domain encoder (a scene classifier on RSSCN7) and the layout
segmenter (on real paired tiles). Thin drivers over :mod:`terrasynth.train.supervised` that load a split into
memory at a fixed size, train, score on the validation split and save a model folder (safetensors + JSON)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data.paired_tiles import PairedTiles
from ..data.scene_folder import SceneFolder
from ..data.transforms import Resize
from ..files import write_json_atomic
from ..models.recognition import Classifier, ClassifierConfig, Segmenter, SegmenterConfig, save_model
from .supervised import SupervisedTrainConfig, classification_accuracy, segmentation_scores, train_classifier
from .supervised import train_segmenter as fit_segmenter

log = logging.getLogger(__name__)


def _stack(dataset, keys, limit=None):
    count = len(dataset) if limit is None else min(limit, len(dataset))
    samples = [dataset[i] for i in range(count)]
    return [torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in keys]


def train_domain_encoder(
    scene_root: str | Path,
    out: str | Path,
    size: int = 256,
    config: SupervisedTrainConfig | None = None,
    limit: int | None = None,
    progress: bool = False,
    splits: tuple[str, str] = ("train", "val"),
) -> dict:
    """Fine-tune an EfficientNet-Lite0 scene classifier on the train split; its pooled features are the
    ``domain`` extractor and its class probabilities the Inception-Score analogue."""
    config = config or SupervisedTrainConfig(steps=600, batch_size=16, crop=None)
    train = SceneFolder(scene_root, splits[0], transforms=Resize(size))
    val = SceneFolder(scene_root, splits[1], transforms=Resize(size))
    images, labels = _stack(train, ("image", "label"), limit)
    model = Classifier(ClassifierConfig(len(train.classes), tuple(train.classes)))
    losses = train_classifier(model, images, labels, config, progress)
    val_images, val_labels = _stack(val, ("image", "label"), limit)
    result = {
        "kind": "domain encoder",
        "scenes": str(scene_root),
        "input_size": size,
        "train_n": len(images),
        "val_n": len(val_images),
        "val_accuracy": classification_accuracy(model, val_images, val_labels),
        "final_loss": losses[-1],
        "steps": config.steps,
    }
    save_model(model, out)
    write_json_atomic(Path(out) / "training.json", result)
    return result


def train_layout_segmenter(
    paired_root: str | Path,
    out: str | Path,
    size: int = 256,
    config: SupervisedTrainConfig | None = None,
    limit: int | None = None,
    progress: bool = False,
    splits: tuple[str, str] = ("train", "val"),
) -> dict:
    """Train the layout-fidelity segmenter on real pairs (train split); report val mIoU (the ceiling)."""
    config = config or SupervisedTrainConfig(steps=1500, batch_size=8, crop=128)
    train = PairedTiles(paired_root, splits[0], transforms=Resize(size))
    val = PairedTiles(paired_root, splits[1], transforms=Resize(size))
    table = train.class_table
    images, layouts = _stack(train, ("image", "layout"), limit)
    model = Segmenter(SegmenterConfig(len(table), tuple(table.names)))
    losses = fit_segmenter(model, images, layouts, config, progress)
    val_images, val_layouts = _stack(val, ("image", "layout"), limit)
    scores = segmentation_scores(model.predict(val_images), val_layouts, len(table))
    result = {
        "kind": "layout segmenter",
        "pairs": str(paired_root),
        "input_size": size,
        "train_n": len(images),
        "val_n": len(val_images),
        "val_miou": scores["miou"],
        "val_pixel_accuracy": scores["pixel_accuracy"],
        "val_iou_per_class": dict(zip(table.names, scores["iou_per_class"])),
        "final_loss": losses[-1],
        "steps": config.steps,
        "batch_size": config.batch_size,
        "crop": config.crop,
        "seed": config.seed,
        "class_weighting": config.class_weighting,
        "rare_crop_share": config.rare_crop_share,
        "rare_class_share": config.rare_class_share,
    }
    save_model(model, out)
    write_json_atomic(Path(out) / "training.json", result)
    return result
