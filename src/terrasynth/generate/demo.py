"""``terrasynth demo``: the shipped model on bundled layouts and scene prompts, shown on one HTML page."""

from __future__ import annotations

import html
import time
from pathlib import Path

from ..data.captions import caption_from_layout
from ..data.classes import ClassTable
from ..data.layouts import load_layout
from ..files import write_text_atomic
from .api import generate_images, load_pipeline

DEMO_ASSETS = Path(__file__).resolve().parent.parent / "assets" / "demo"
DEMO_LAYOUTS = ("river_village.png", "lake_and_forest.png", "fields_utm34.geojson")
DEMO_PROMPTS = (
    "aerial image of a forest",
    "aerial image of a residential area",
    "aerial image of farm fields",
    "aerial image of a river or lake",
    "aerial image of an industrial area",
)


def run_demo(
    out_dir: str | Path,
    model: str = "default",
    steps: int | None = None,
    images_per_layout: int = 3,
    progress: bool = True,
) -> Path:
    out_dir = Path(out_dir)
    started = time.time()
    pipeline = load_pipeline(model)
    class_table = ClassTable.from_json(DEMO_ASSETS / "classes.json")
    rows = []
    for name in DEMO_LAYOUTS:
        layout = load_layout(DEMO_ASSETS / name, class_table)
        prompt = caption_from_layout(layout.classes, class_table)
        written = generate_images(
            prompt=prompt,
            layout_path=DEMO_ASSETS / name,
            out_dir=out_dir / "layouts",
            num_images=images_per_layout,
            seed=0,
            steps=steps,
            pipeline=pipeline,
            progress=progress,
        )
        stem = Path(name).stem
        rows.append((name, prompt, f"layouts/{stem}-grid.png", [p.relative_to(out_dir).as_posix() for p in written]))
    for index, prompt in enumerate(DEMO_PROMPTS):
        stem = f"prompt-{index}"
        written = generate_images(
            prompt=prompt,
            out_dir=out_dir / "prompts",
            num_images=2,
            seed=0,
            steps=steps,
            pipeline=pipeline,
            progress=progress,
            stem=stem,
        )
        rows.append((None, prompt, f"prompts/{stem}-grid.png", [p.relative_to(out_dir).as_posix() for p in written]))
    page = out_dir / "index.html"
    write_text_atomic(page, _page(rows, pipeline[1], steps, time.time() - started))
    return page


def _page(rows, model_id: str, steps: int, seconds: float) -> str:
    body = []
    for layout_name, prompt, grid, files in rows:
        source = f"layout <code>{html.escape(layout_name)}</code>" if layout_name else "prompt only"
        links = " ".join(f'<a href="{html.escape(f)}">{html.escape(Path(f).name)}</a>' for f in files)
        body.append(
            f"<section><h2>{source}</h2><p class=prompt>“{html.escape(prompt)}”</p>"
            f'<img src="{html.escape(grid)}" alt="layout and generated images"><p class=files>{links}</p></section>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Terrasynth demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}}
img{{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}} .prompt{{font-style:italic}}
.files{{font-size:.8em;color:#555}} section{{margin-bottom:2em}}</style></head><body>
<h1>Terrasynth demo</h1>
<p>Every image below is <strong>synthetic</strong>, made by <code>{html.escape(model_id)}</code> with {steps}
DPM-Solver++ steps in {seconds:.0f} s on this machine. Each row shows the layout (where one was given), then
the generated tiles. Each file carries its provenance: run <code>terrasynth info FILE</code>. The GeoJSON layout is
georeferenced, so its tiles are GeoTIFFs on the layout's grid.</p>
{"".join(body)}
</body></html>
"""
