"""Paired layout ↔ image tiles: an image folder and a mask folder with matching file stems."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from .captions import caption_from_layout
from .classes import ClassTable
from .images import is_image_file, list_images, read_georeference, read_image, read_mask
from .splits import grouped_split


class LayoutTiles(torch.utils.data.Dataset):
    """What the datasets of image and layout tiles share: a sample's last steps, and plotting."""

    class_table: ClassTable
    transforms = None

    def finish_sample(self, sample: dict, georeference) -> dict:
        """``sample`` with its ``georeference`` (when it has one), through ``transforms``."""
        if georeference is not None:
            sample["georeference"] = georeference
        return sample if self.transforms is None else self.transforms(sample)

    def plot(self, sample: dict, prediction: torch.Tensor | None = None, title: str | None = None):
        from .plot import plot_sample

        return plot_sample(sample, self.class_table, prediction=prediction, title=title)


class PairedTiles(LayoutTiles):
    """Tiles like ``root/images/0001.jpg`` with ``root/masks/0001.png`` and ``root/classes.json``.

    Samples: ``{"image": float 3×H×W in [0,1], "layout": int64 H×W, "caption": str, "id": str}`` plus
    ``"georeference"`` when the image or mask is a georeferenced GeoTIFF. Splits keep blocks of consecutive
    ids together (see :mod:`terrasynth.data.splits`).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms=None,
        class_table: ClassTable | None = None,
        metadata: dict | None = None,
        image_dir: str = "images",
        mask_dir: str = "masks",
        block_size: int = 32,
    ):
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.metadata = metadata
        if not self.root.is_dir():
            raise InputError(self.root, "dataset folder not found", f"expected {image_dir}/ and {mask_dir}/ inside")
        if class_table is None:
            table_path = self.root / "classes.json"
            if not table_path.is_file():
                raise InputError(table_path, "class table not found", "write classes.json or pass a class table")
            class_table = ClassTable.from_json(table_path)
        self.class_table = class_table
        images = list_images(self.root / image_dir)
        mask_folder = self.root / mask_dir
        if not mask_folder.is_dir():
            raise InputError(mask_folder, "mask folder not found")
        mask_files = sorted(p for p in mask_folder.iterdir() if is_image_file(p))
        for folder, files in ((self.root / image_dir, images), (mask_folder, mask_files)):
            stems = [p.stem for p in files]
            twins = sorted({s for s in stems if stems.count(s) > 1})
            if twins:
                raise InputError(folder, f"several files share the id {twins[0]!r}", "keep one file per tile id")
        masks = {p.stem: p for p in mask_files}
        unpaired = [p.name for p in images if p.stem not in masks]
        if unpaired:
            raise InputError(mask_folder, f"no mask for {len(unpaired)} image(s), e.g. {unpaired[0]}")
        by_id = {p.stem: (p, masks[p.stem]) for p in images}
        self.ids = grouped_split(sorted(by_id), split, block_size)
        if not self.ids:
            raise InputError(self.root, f"split {split!r} is empty", "use split='all' for a handful of tiles")
        self.files = [by_id[i] for i in self.ids]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        image_path, mask_path = self.files[index]
        image = read_image(image_path)
        layout = read_mask(mask_path, len(self.class_table))
        if tuple(image.shape[-2:]) != tuple(layout.shape):
            raise InputError(
                mask_path,
                f"mask is {tuple(layout.shape)} but image {image_path.name} is {tuple(image.shape[-2:])}",
                "image and mask must have the same size",
            )
        sample = {
            "image": image,
            "layout": layout,
            "caption": caption_from_layout(layout, self.class_table, self.metadata),
            "id": self.ids[index],
        }
        return self.finish_sample(sample, read_georeference(image_path) or read_georeference(mask_path))
