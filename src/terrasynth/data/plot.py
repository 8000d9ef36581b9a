"""Figures of samples: image, layout and (optionally) a prediction side by side.

Figures are made with ``matplotlib.figure.Figure`` directly, not through pyplot: no backend is switched, no
global figure list grows when plotting many samples, and ``figure.savefig`` works without a display.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from .classes import ClassTable


def _as_image(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().float().cpu().clamp(0, 1)
    if array.dim() == 3:
        array = array.permute(1, 2, 0)
        if array.shape[-1] == 1:
            array = array[..., 0]
    return array.numpy()


def plot_sample(
    sample: dict,
    class_table: ClassTable | None,
    prediction: torch.Tensor | None = None,
    title: str | None = None,
) -> Figure:
    """Image, layout (when the sample has one and a class table is given) and prediction: a prediction with
    3 channels is an image, a 2-D one a layout."""
    panels = [("image", _as_image(sample["image"]))]
    if "layout" in sample and class_table is not None:
        panels.append(("layout", class_table.render(sample["layout"])))
    if prediction is not None:
        if prediction.dim() == 3:
            shown = _as_image(prediction)
        elif class_table is not None:
            shown = class_table.render(prediction)
        else:
            shown = prediction.detach().cpu().numpy()
        panels.append(("prediction", shown))
    figure = Figure(figsize=(3.2 * len(panels), 3.6))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, (name, array) in zip(axes[0], panels, strict=True):
        axis.imshow(array, interpolation="nearest", cmap="gray" if array.ndim == 2 else None)
        axis.set_title(name)
        axis.axis("off")
    if class_table is not None and "layout" in sample:
        from matplotlib.patches import Patch

        handles = [
            Patch(color=[v / 255 for v in c], label=n)
            for n, c in zip(class_table.names, class_table.display_colors, strict=True)
        ]
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    figure.suptitle(title or sample.get("caption", ""), fontsize=9)
    figure.tight_layout(rect=(0, 0.08, 1, 0.95))
    return figure
