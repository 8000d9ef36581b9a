"""A dataset that ``terrasynth synthesize`` wrote, read back: images with the layouts they were made from."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import InputError
from .classes import ClassTable
from .images import read_georeference, read_image, read_mask
from .paired_tiles import LayoutTiles
from .splits import grouped_split

INDEX_NAME = "index.csv"
# Columns read back as numbers; the rest stay text.
_INTEGERS = ("k", "seed", "steps", "width", "height")
_FLOATS = ("guidance_scale",)


class SyntheticTiles(LayoutTiles):
    """``root/images/<id>``, ``root/masks/<id>``, ``root/classes.json`` and ``root/index.csv``.

    Samples, like :class:`~terrasynth.data.paired_tiles.PairedTiles`: ``{"image": float 3×H×W in [0,1], "layout":
    int64 H×W, "caption": the prompt, "id": str, "metadata": the index row}`` plus ``"georeference"`` for
    GeoTIFFs. Splits keep every image of a layout (and its augmented copies) together, by layout id.
    ``checksum=True`` checks each file against the sha256 in the index as it is read.
    """

    def __init__(self, root: str | Path, split: str = "all", transforms=None, checksum: bool = False):
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.checksum = checksum
        self._verify()
        self.class_table = ClassTable.from_json(self.root / "classes.json")
        rows = self._read_index()
        chosen = set(grouped_split(sorted({row["layout_id"] for row in rows}), split))
        self.rows = [row for row in rows if row["layout_id"] in chosen]
        if not self.rows:
            raise InputError(self.root, f"split {split!r} is empty", "use split='all' for a handful of layouts")
        self.ids = [row["id"] for row in self.rows]

    def _verify(self) -> None:
        """Index, class table and folders present, else an error naming the folder and the fix."""
        if not self.root.is_dir():
            raise InputError(self.root, "synthetic dataset folder not found", "make one with terrasynth synthesize")
        for name in (INDEX_NAME, "classes.json", "images", "masks"):
            if not (self.root / name).exists():
                raise InputError(
                    self.root / name,
                    "not found: not a synthesized dataset",
                    "make one with terrasynth synthesize (a rerun rebuilds the index)",
                )

    def _read_index(self) -> list[dict]:
        path = self.root / INDEX_NAME
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        if not rows:
            raise InputError(path, "the index lists no image", "run terrasynth synthesize again to make them")
        for row in rows:
            for name in _INTEGERS:
                row[name] = int(row[name]) if row.get(name) not in (None, "") else None
            for name in _FLOATS:
                row[name] = float(row[name]) if row.get(name) not in (None, "") else None
            for name in ("image", "mask"):
                if not (self.root / row[name]).is_file():
                    raise InputError(self.root / row[name], "listed in the index but missing", "rerun synthesize")
        return rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        image_path, mask_path = self.root / row["image"], self.root / row["mask"]
        if self.checksum:
            from ..files import file_sha256

            for path, key in ((image_path, "image_sha256"), (mask_path, "mask_sha256")):
                if file_sha256(path) != row[key]:
                    raise InputError(path, "sha256 differs from the index", "the file changed; rerun synthesize")
        sample = {
            "image": read_image(image_path),
            "layout": read_mask(mask_path, len(self.class_table)),
            "caption": row["prompt"],
            "id": row["id"],
            "metadata": dict(row),
        }
        return self.finish_sample(sample, read_georeference(image_path))


def is_synthetic_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a folder ``terrasynth synthesize`` wrote."""
    path = Path(path)
    return (path / INDEX_NAME).is_file() and (path / "images").is_dir() and (path / "masks").is_dir()


__all__ = ["SyntheticTiles", "is_synthetic_dataset"]
