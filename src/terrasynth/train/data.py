"""Training datasets assembled from the project's sources."""

from __future__ import annotations

import logging
import random

import torch

from ..data.paired_tiles import PairedTiles
from ..data.scene_folder import SceneFolder
from ..data.transforms import CenterCrop, Compose, RandomCrop, RandomDihedral
from ..errors import InputError

log = logging.getLogger(__name__)


class ImagesOnly(torch.utils.data.Dataset):
    """Wrap a dict dataset and keep only the ``image`` key (so sources with different keys can be mixed)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.dataset[index]["image"]}


def open_split(dataset_class, root, split: str, *args, **kwargs):
    """The dataset's ``split``, or its training split when that split is empty (a handful of tiles)."""
    try:
        return dataset_class(root, split, *args, **kwargs)
    except InputError:
        if split == "train":
            raise
        log.warning("%s has no %r split: using training tiles for validation", root, split)
        return dataset_class(root, "train", *args, **kwargs)


def image_dataset(
    paired_roots, scene_roots, split: str, crop: int, augment: bool = True, rng: random.Random | None = None
):
    """Images of every source, cropped to ``crop`` (randomly, with flips/rotations, when ``augment``; the
    random choices come from ``rng`` when given, so a trainer can seed them)."""
    transform = Compose([RandomCrop(crop, rng), RandomDihedral(rng)]) if augment else CenterCrop(crop)
    parts = [ImagesOnly(open_split(PairedTiles, root, split, transform)) for root in paired_roots]
    parts += [ImagesOnly(open_split(SceneFolder, root, split, transform)) for root in scene_roots]
    return torch.utils.data.ConcatDataset(parts)
