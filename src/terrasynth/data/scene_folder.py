"""Scene classification sets laid out one folder per class (RSSCN7, UC Merced, EuroSAT RGB)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from .captions import SCENE_TEMPLATES, caption_for_scene
from .images import is_image_file, read_image
from .splits import unit_hash


class SceneFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>``. Samples: ``{"image", "label": int, "class_name", "caption", "id"}``.

    The split is stratified and deterministic: each file goes to train/val/test by a hash of its name.
    ``caption_templates`` vary the wording of the scene caption per sample (deterministically per file).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms=None,
        classes: list[str] | None = None,
        fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
        caption_templates: tuple[str, ...] = SCENE_TEMPLATES[:1],
        metadata: dict | None = None,
    ):
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.caption_templates = caption_templates
        self.metadata = metadata
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be one of train, val, test, all, got {split!r}")
        if not self.root.is_dir():
            raise InputError(self.root, "dataset folder not found")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.classes = list(classes) if classes is not None else found
        if not self.classes:
            raise InputError(self.root, "no class folders found", "expected one sub-folder of images per class")
        missing = [c for c in self.classes if c not in found]
        if missing:
            raise InputError(self.root, f"class folder(s) missing: {', '.join(missing)}")
        self.files: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            files = sorted(p for p in (self.root / name).iterdir() if is_image_file(p))
            if not files:
                raise InputError(self.root / name, "class folder has no images")
            self.files += [(p, label) for p in files if split == "all" or self._split_of(p, fractions) == split]
        if not self.files:
            raise InputError(self.root, f"split {split!r} is empty", "use split='all' for a handful of images")

    @staticmethod
    def _split_of(path: Path, fractions) -> str:
        u = unit_hash(f"{path.parent.name}/{path.name}")
        return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"

    @property
    def labels(self) -> list[int]:
        """The label of each sample, in order (for samplers and per-class counts, without reading images)."""
        return [label for _, label in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path, label = self.files[index]
        # Chosen by the file, not the position, so a file has one caption in every split.
        choice = int(unit_hash(f"template/{path.parent.name}/{path.name}") * len(self.caption_templates))
        template = self.caption_templates[min(choice, len(self.caption_templates) - 1)]
        sample = {
            "image": read_image(path),
            "label": label,
            "class_name": self.classes[label],
            "caption": caption_for_scene(self.classes[label], template, self.metadata),
            "id": f"{path.parent.name}/{path.stem}",
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(self, sample: dict, title: str | None = None):
        from .plot import plot_sample

        return plot_sample(sample, None, title=title)
