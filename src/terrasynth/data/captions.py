"""Captions built from a sample: scene class, layout class shares and metadata words, as the paper varies
them."""

from __future__ import annotations

import random

import torch

from .classes import ClassTable

SEASONS = ("spring", "summer", "autumn", "winter")
TIMES_OF_DAY = ("morning", "noon", "afternoon", "evening")

# Readable forms of dataset class names.
SCENE_WORDS = {
    "river_lake": "a river or lake",
    "resident": "a residential area",
    "industry": "an industrial area",
    "parking": "a parking lot",
    "forest": "a forest",
    "field": "farm fields",
    "grass": "grassland",
    "annualcrop": "annual crop fields",
    "herbaceousvegetation": "herbaceous vegetation",
    "highway": "a highway",
    "pasture": "pasture",
    "permanentcrop": "permanent crops",
    "residential": "a residential area",
    "river": "a river",
    "sealake": "a sea or lake",
}
SCENE_TEMPLATES = (
    "aerial image of {}",
    "satellite image of {}",
    "an overhead view of {}",
    "a top-down photo of {}",
    "remote sensing image showing {}",
)


def scene_phrase(class_name: str) -> str:
    key = class_name.lower().replace(" ", "").replace("-", "")
    return SCENE_WORDS.get(key, SCENE_WORDS.get(class_name.lower(), class_name.replace("_", " ")))


def caption_for_scene(class_name: str, template: str = SCENE_TEMPLATES[0], metadata: dict | None = None) -> str:
    """``"aerial image of a forest"``, with metadata words appended when given."""
    return _with_metadata(template.format(scene_phrase(class_name)), metadata)


def scene_paraphrases(class_name: str) -> list[str]:
    return [caption_for_scene(class_name, t) for t in SCENE_TEMPLATES]


def caption_from_layout(
    layout: torch.Tensor,
    class_table: ClassTable,
    metadata: dict | None = None,
    major: float = 0.10,
    minor: float = 0.005,
) -> str:
    """``"aerial image: 55 % woodland, 30 % water, with road, building"``.

    Classes covering at least ``major`` of the tile are listed with their share (rounded to 5 %), largest
    first; classes covering at least ``minor`` are named after "with". Values outside the class table
    (no-data) are not counted.
    """
    values = torch.as_tensor(layout).flatten().long().cpu()
    values = values[(values >= 0) & (values < len(class_table))]  # no-data values (e.g. 255) are not a class
    counts = torch.bincount(values, minlength=len(class_table)).double()
    shares = (counts / counts.sum().clamp(min=1)).tolist()
    order = sorted(range(len(class_table)), key=lambda i: -shares[i])
    majors = [f"{int(round(shares[i] * 20) * 5)} % {class_table.names[i]}" for i in order if shares[i] >= major]
    minors = [class_table.names[i] for i in order if minor <= shares[i] < major]
    text = "aerial image: " + ", ".join(majors) if majors else "aerial image"
    if minors:
        text += ", with " + ", ".join(minors)
    return _with_metadata(text, metadata)


def add_metadata_words(text: str, metadata: dict | None) -> str:
    """``text`` with the metadata words (season, time of day, place, ground sampling distance) appended, as
    dataset captions get them: ``"aerial image of sks site, in winter, over Kraków"``."""
    return _with_metadata(text, metadata)


def _with_metadata(text: str, metadata: dict | None) -> str:
    if not metadata:
        return text
    words = []
    if metadata.get("season"):
        words.append(f"in {metadata['season']}")
    if metadata.get("time_of_day"):
        words.append(f"in the {metadata['time_of_day']}" if metadata["time_of_day"] != "noon" else "at noon")
    if metadata.get("place"):
        words.append(f"over {metadata['place']}")
    if metadata.get("gsd_m"):
        gsd = float(metadata["gsd_m"])
        words.append(f"{gsd * 100:.0f} cm per pixel" if gsd < 1 else f"{gsd:g} m per pixel")
    return text + (", " + ", ".join(words) if words else "")


def random_metadata(rng: random.Random) -> dict:
    """Season and time-of-day words drawn at random, for prompt variation at generation time."""
    return {"season": rng.choice(SEASONS), "time_of_day": rng.choice(TIMES_OF_DAY)}
