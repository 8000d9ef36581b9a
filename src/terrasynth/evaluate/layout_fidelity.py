"""Layout fidelity: does a generated image obey its layout? A segmenter trained on real pairs
(``terrasynth train-segmenter``; the shipped one at ``terrasynth/weights/segmenter``) predicts classes on
generated images, scored against the input layout (mIoU, pixel accuracy). The same on the real tiles of those
layouts is the ceiling: the segmenter's own error."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.registry import WEIGHTS_DIR
from ..train.supervised import segmentation_scores

SHIPPED_SEGMENTER = WEIGHTS_DIR / "segmenter"


def load_segmenter(folder: str | Path | None = None):
    from ..models.recognition import Segmenter, load_model

    folder = Path(folder) if folder is not None else SHIPPED_SEGMENTER
    if not (folder / "model.safetensors").is_file():
        raise InputError(
            folder,
            "no segmenter here",
            "train one with `terrasynth train-segmenter --paired DIR --out DIR` and pass --segmenter DIR",
        )
    model = load_model(folder)
    if not isinstance(model, Segmenter):
        raise InputError(folder, "expected a segmenter folder, got a classifier")
    return model


@torch.no_grad()
def layout_scores(
    segmenter, images: list[torch.Tensor] | torch.Tensor, layouts: list[torch.Tensor], batch_size: int = 8
) -> dict:
    """mIoU and pixel accuracy of the segmenter's predictions on ``images`` against ``layouts``. Images whose
    size differs from their layout, or is not a multiple of 32, are resized (bilinear, antialiased) to the
    layout's size rounded up to a multiple of 32, and the prediction is resized back (nearest)."""
    if len(images) != len(layouts):
        raise InputError(None, f"{len(images)} images but {len(layouts)} layouts")
    if len(images) < 1:
        raise InputError(None, "layout fidelity needs at least 1 image with its layout, got 0")
    num_classes = segmenter.config.num_classes
    predicted, targets = [], []
    for image, layout in zip(images, layouts):
        height, width = layout.shape[-2:]
        size = (-(-height // 32) * 32, -(-width // 32) * 32)
        x = image[None].float()
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        prediction = segmenter.predict(x, batch_size)
        if tuple(prediction.shape[-2:]) != (height, width):
            prediction = F.interpolate(prediction[None].float(), (height, width), mode="nearest")[0].long()
        predicted.append(prediction.flatten())
        targets.append(layout.flatten().long().clamp(0, num_classes - 1))
    scores = segmentation_scores(torch.cat(predicted), torch.cat(targets), num_classes)
    scores["n"] = len(images)
    return scores
