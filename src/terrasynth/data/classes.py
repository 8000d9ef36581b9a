"""Class tables: the names and colours of layout classes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..files import read_json

# Display colours for class names that land-cover sources commonly use; other names get a tab10 colour.
KNOWN_DISPLAY_COLORS: dict[str, tuple[int, int, int]] = {
    "background": (222, 207, 170),
    "other": (222, 207, 170),
    "building": (220, 50, 47),
    "buildings": (220, 50, 47),
    "woodland": (34, 120, 48),
    "forest": (34, 120, 48),
    "tree": (34, 120, 48),
    "water": (38, 110, 200),
    "road": (120, 120, 120),
    "roads": (120, 120, 120),
    "field": (240, 220, 90),
    "grass": (140, 200, 90),
}
TAB10 = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


@dataclass(frozen=True)
class ClassTable:
    """Layout classes. ``colors`` are the colours of a colour-coded source map (used to snap map pixels to
    classes); ``display_colors`` are for showing layouts to people."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    display_colors: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self):
        if not self.names:
            raise ValueError("a class table needs at least one class")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"class names must be unique, got {self.names}")
        if len(self.colors) != len(self.names):
            raise ValueError("a class table needs one colour per class")
        if self.display_colors and len(self.display_colors) != len(self.names):
            raise ValueError("a class table needs one display colour per class")
        for color in tuple(self.colors) + tuple(self.display_colors):
            if len(tuple(color)) != 3 or not all(0 <= int(v) <= 255 for v in color):
                raise ValueError(f"colours must be [r, g, b] with values 0..255, got {list(color)}")
        if not self.display_colors:
            shown = tuple(
                KNOWN_DISPLAY_COLORS.get(name.lower(), TAB10[i % len(TAB10)]) for i, name in enumerate(self.names)
            )
            object.__setattr__(self, "display_colors", shown)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "colors", tuple(tuple(int(v) for v in c) for c in self.colors))
        object.__setattr__(self, "display_colors", tuple(tuple(int(v) for v in c) for c in self.display_colors))

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown class {name!r}; classes are {', '.join(self.names)}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> ClassTable:
        """Read ``{"classes": [{"index": 0, "name": ..., "rgb": [r, g, b]}, ...]}``. A bare list of such
        entries works too, and so does a list of names (colours then come from tab10)."""
        data = read_json(path)
        entries = data.get("classes") if isinstance(data, dict) else data
        if not isinstance(entries, list) or not entries:
            raise InputError(path, "no class list found", 'expected {"classes": [{"index", "name", "rgb"}, ...]}')
        entries = [{"index": i, "name": e} if isinstance(e, str) else e for i, e in enumerate(entries)]
        if not all(isinstance(e, dict) for e in entries):
            raise InputError(path, "each class entry must be an object or a name", 'e.g. {"index": 0, "name": "water"}')
        try:
            entries = sorted(entries, key=lambda e: int(e.get("index", 0)))
            indices = [int(e.get("index", i)) for i, e in enumerate(entries)]
            if indices != list(range(len(entries))):
                raise InputError(path, f"class indices must be 0..{len(entries) - 1} without gaps, got {indices}")
            names = tuple(str(e["name"]) for e in entries)
            colors = tuple(tuple(e.get("rgb", TAB10[i % 10])) for i, e in enumerate(entries))
            display = (
                tuple(tuple(e["display_rgb"]) for e in entries) if all("display_rgb" in e for e in entries) else ()
            )
            return cls(names, colors, display)
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(path, f"malformed class entry: {error}") from None

    def to_dict(self) -> dict:
        return {
            "classes": [
                {"index": i, "name": n, "rgb": list(c), "display_rgb": list(d)}
                for i, (n, c, d) in enumerate(zip(self.names, self.colors, self.display_colors, strict=True))
            ]
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClassTable:
        entries = data["classes"]
        return cls(
            tuple(e["name"] for e in entries),
            tuple(tuple(e["rgb"]) for e in entries),
            tuple(tuple(e["display_rgb"]) for e in entries) if all("display_rgb" in e for e in entries) else (),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self, layout) -> np.ndarray:
        """Colour a class-index layout (H×W) for display: returns uint8 H×W×3."""
        if torch.is_tensor(layout):
            layout = layout.detach().cpu().numpy()
        indices = np.asarray(layout, dtype=np.int64)
        palette = np.asarray(self.display_colors, dtype=np.uint8)
        return palette[np.clip(indices, 0, len(self) - 1)]


LANDCOVER_AI = ClassTable(
    names=("background", "building", "woodland", "water", "road"),
    colors=((0, 0, 0), (45, 45, 45), (74, 74, 74), (176, 176, 176), (255, 255, 255)),
)
