"""Deterministic train/val/test splits that do not leak between neighbouring tiles.

Tiles cut from one scene come with consecutive ids, and neighbours look alike: a random split puts
near-copies on both sides. Here ids are cut into blocks of consecutive numbers and each block goes to one
split, chosen by a hash of the block. A tile's split depends only on its own id, so it does not change when
other tiles are added or withheld.
"""

from __future__ import annotations

import hashlib
import re

SPLITS = ("train", "val", "test")


def unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` alone (the first 48 bits of its SHA-256): a split or a caption choice
    that does not depend on which other items there are."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / float(16**12)


def _check_fractions(fractions) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    return fractions


def split_of(key: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """The split of a key, by a hash of the key alone."""
    fractions = _check_fractions(fractions)
    u = unit_hash(key)
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def block_key(tile_id: str, block_size: int = 32) -> str:
    """The block of a tile id: its last number divided by ``block_size``, with the rest of the id (scene
    names, earlier numbers) kept, so tiles of different scenes fall in different blocks. Ids without a number
    are their own block."""
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    matches = list(re.finditer(r"\d+", tile_id))
    if not matches:
        return tile_id
    last = matches[-1]
    prefix = tile_id[: last.start()] + "#" + tile_id[last.end() :]
    return f"{prefix}:{int(last.group()) // block_size}"


def grouped_split(tile_ids: list[str], split: str, block_size: int = 32, fractions=(0.8, 0.1, 0.1)) -> list[str]:
    """The ids of ``tile_ids`` in ``split`` ("train", "val", "test" or "all"), in their given order."""
    if split == "all":
        return list(tile_ids)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
    fractions = _check_fractions(fractions)
    return [t for t in tile_ids if split_of(block_key(t, block_size), fractions) == split]
