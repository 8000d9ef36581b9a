"""``metrics.json`` and ``report.html``: the realism table (with the real-vs-real floor row and each row's ratio
to it), notes (resizes, skipped files, how the floor was made), image grids and plots. Every file is written
atomically; plots use matplotlib's Agg backend."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..data.grids import image_grid, write_png
from ..files import atomic_path, write_json_atomic, write_text_atomic
from ..pages import render_page

# Scores where lower is better (the rest: higher is better); shown in the table header.
LOWER_IS_BETTER_PREFIXES = ("FD", "FID", "KID", "perceptual", "memorised")


def score(value: float, std: float | None = None, **meta) -> dict:
    """A score with its provenance: ``{"value", "std"?, "extractor", "resize", "input_size", "n_real", ...}``."""
    out = {"value": None if value is None or not math.isfinite(value) else float(value)}
    if std is not None:
        out["std"] = float(std)
    out.update(meta)
    return out


def ratios_to_floor(rows: dict[str, dict], floor: str) -> dict[str, dict[str, float | None]]:
    """Each row's score divided by the floor row's (1.0 means as good as real vs real); ``None`` where the
    floor's score is not positive (an unbiased KID of two real sets can be slightly negative)."""
    base = rows.get(floor, {})
    out = {}
    for name, row in rows.items():
        out[name] = {}
        for key, entry in row.items():
            reference = base.get(key, {}).get("value")
            value = entry.get("value")
            out[name][key] = (
                (value / reference) if value is not None and reference is not None and reference > 0 else None
            )
    return out


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _format(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    value = entry["value"]
    text = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    if "std" in entry:
        text += f" ± {entry['std']:.2g}"
    return text


def table_columns(rows: dict[str, dict]) -> list[str]:
    columns: list[str] = []
    for row in rows.values():
        columns += [k for k in row if k not in columns]
    return columns


def format_table(rows: dict[str, dict], ratios: dict | None = None) -> str:
    """A plain-text table (for the console and benchmark output)."""
    columns = table_columns(rows)
    width = max([len(n) for n in rows] + [10]) + 2
    lines = [f"{'':{width}s}" + "".join(f"{c:>22s}" for c in columns)]
    for name, row in rows.items():
        lines.append(f"{name:{width}s}" + "".join(f"{_format(row.get(c)):>22s}" for c in columns))
        if ratios and name in ratios:
            cells = [ratios[name].get(c) for c in columns]
            lines.append(f"{'  ÷ floor':{width}s}" + "".join(f"{'' if v is None else f'{v:.3g}':>22s}" for v in cells))
    return "\n".join(lines)


def _table_context(rows: dict[str, dict], ratios: dict | None, floor: str | None) -> dict:
    """The score table as the template shows it: columns with their better-direction arrow, rows of cells."""
    columns = table_columns(rows)
    shown_rows = []
    for name, row in rows.items():
        cells = []
        for c in columns:
            entry = row.get(c)
            ratio = ratios.get(name, {}).get(c) if ratios else None
            cells.append(
                {
                    "title": json.dumps({k: v for k, v in (entry or {}).items() if k not in ("value", "std")}),
                    "text": _format(entry),
                    "ratio": f"{ratio:.3g}" if ratio is not None and name != floor else None,
                }
            )
        shown_rows.append({"name": name, "floor": name == floor, "cells": cells})
    return {
        "columns": [{"name": c, "arrow": "↓" if c.startswith(LOWER_IS_BETTER_PREFIXES) else "↑"} for c in columns],
        "rows": shown_rows,
    }


def write_grid(path: Path, images: list, columns: int = 8) -> Path:
    return write_png(path, image_grid(list(images), columns))


def write_bar_plot(path: Path, rows: dict[str, dict], key: str) -> Path | None:
    """A bar chart of one score over the table's rows."""
    names = [n for n, r in rows.items() if r.get(key, {}).get("value") is not None]
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(max(4, 1.2 * len(names)), 3))
    values = [rows[n][key]["value"] for n in names]
    stds = [rows[n][key].get("std", 0.0) for n in names]
    axis.bar(range(len(names)), values, yerr=stds, color="#4a7")
    axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(key)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def write_report(
    out_dir: str | Path,
    results: dict,
    grids: dict[str, list] | None = None,
    plots: dict[str, Path] | None = None,
    title: str = "Terrasynth realism report",
) -> dict[str, Path]:
    """Write ``metrics.json`` (``results``) and ``report.html`` with the table(s), notes, grids and plots.

    ``results`` holds ``rows`` (name → score → :func:`score` dict), ``floor`` (the floor row's name), and any
    other JSON-able sections (``extractors``, ``inputs``, ``notes``, ``paired``...), which the HTML lists."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, floor = results.get("rows", {}), results.get("floor")
    if floor and "ratios" not in results:
        results["ratios"] = ratios_to_floor(rows, floor)
    results = _json_safe(results)
    write_json_atomic(out / "metrics.json", results)
    written = {"metrics": out / "metrics.json"}
    images = []
    for name, grid_images in (grids or {}).items():
        if len(grid_images):
            file_name = "grid-" + "".join(ch if ch.isalnum() else "-" for ch in name.lower()) + ".png"
            write_grid(out / file_name, grid_images)
            images.append((name, file_name))
    plots = dict(plots or {})
    for key in [k for k in table_columns(rows) if k.startswith(("FD", "FID"))][:2]:
        path = write_bar_plot(out / f"plot-{key}.png", rows, key)
        if path is not None:
            plots.setdefault(key, path)
    page = render_page(
        "evaluate/report.html",
        title=title,
        floor=str(floor),
        **_table_context(rows, results.get("ratios"), floor),
        extractors=[(n, json.dumps(d)) for n, d in results.get("extractors", {}).items()],
        notes=[str(n) for n in results.get("notes", [])],
        plots=[(n, Path(p).name) for n, p in plots.items() if p is not None],
        images=images,
        sections=[
            (key, json.dumps(value, indent=1)[:20000])
            for key, value in results.items()
            if key not in ("rows", "ratios", "notes", "extractors", "floor", "sweep")
        ],
    )
    write_text_atomic(out / "report.html", page)
    written["report"] = out / "report.html"
    return written
