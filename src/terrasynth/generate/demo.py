"""``terrasynth demo``: the shipped model on bundled layouts and scene prompts, shown on one HTML page."""

from __future__ import annotations

import time
from pathlib import Path

from ..data.captions import caption_from_layout
from ..data.classes import ClassTable
from ..data.layouts import load_layout
from ..files import write_text_atomic
from ..pages import render_page
from .api import GenerationRequest, LayoutSpec, OutputOptions, Sampling, generate_images, load_pipeline
from .schedulers import DEFAULT_SCHEDULER

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
        request = GenerationRequest(prompt, LayoutSpec(DEMO_ASSETS / name))
        output = OutputOptions(out_dir / "layouts", progress=progress)
        written = generate_images(pipeline, request, Sampling(steps=steps), output, seed=0, count=images_per_layout)
        stem = Path(name).stem
        rows.append((name, prompt, f"layouts/{stem}-grid.png", [p.relative_to(out_dir).as_posix() for p in written]))
    for index, prompt in enumerate(DEMO_PROMPTS):
        stem = f"prompt-{index}"
        output = OutputOptions(out_dir / "prompts", stem=stem, progress=progress)
        written = generate_images(pipeline, GenerationRequest(prompt), Sampling(steps=steps), output, seed=0, count=2)
        rows.append((None, prompt, f"prompts/{stem}-grid.png", [p.relative_to(out_dir).as_posix() for p in written]))
    page = out_dir / "index.html"
    steps = pipeline[0].default_steps if steps is None else steps
    write_text_atomic(page, _page(rows, pipeline[1], steps, DEFAULT_SCHEDULER, time.time() - started))
    return page


def _page(rows, model_id: str, steps: int, sampler: str, seconds: float) -> str:
    """The demo's index.html: ``rows`` of (layout file name or None, prompt, grid image, generated files)."""
    rows = [{"layout": layout, "prompt": prompt, "grid": grid, "files": files} for layout, prompt, grid, files in rows]
    return render_page("demo/index.html", rows=rows, model_id=model_id, steps=steps, sampler=sampler, seconds=seconds)
