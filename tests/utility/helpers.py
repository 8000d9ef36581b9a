"""Fake paired tiles whose ids fall in many split blocks, so tiny sets have train and test pairs."""

from __future__ import annotations

from pathlib import Path

from tests.fakes import make_paired_tiles


def make_spread_pairs(root: str | Path, n: int = 40, size: int = 32) -> Path:
    """``n`` pairs with ids 0000, 0032, 0064, …: one tile per 32-id split block, so every split gets some."""
    root = make_paired_tiles(root, n=n, size=size)
    for folder in ("images", "masks"):
        for i in reversed(range(n)):
            path = root / folder / f"{i:04d}.png"
            path.rename(path.with_name(f"{i * 32:05d}.png"))
    return root
