"""Peak memory and time of ``terrasynth generate`` on layouts larger than the model's working size.

    OMP_NUM_THREADS=1 python benchmarks/large_layouts.py --sizes 1024 2048 --out runs/large_layouts
    OMP_NUM_THREADS=1 python benchmarks/large_layouts.py --sizes 4096 --steps 4 --out runs/large_layouts
    python benchmarks/large_layouts.py --measure runs/large_layouts/generated-2048/scene-2048-000.tif
    OMP_NUM_THREADS=1 python benchmarks/large_layouts.py --figure runs/large_layouts/generated-2048/scene-2048-000.tif

Each size is one ``terrasynth generate`` process (the real command: layout read, windowed sampling and decoding,
watermark, provenance, atomic GeoTIFF output) on a procedural scene layout written as a georeferenced GeoTIFF
(fields, woodland and water from smoothed noise, a road grid, buildings along the roads; the same for every size
at a given seed). Peak memory is the process's maximum resident set (``getrusage(RUSAGE_CHILDREN).ru_maxrss``,
measured per size in a fresh process), time is its wall time, model loading included. A downscaled copy of each
image is written beside it (``*-preview.png``) to look for seams, and seams are measured (``seam_contrast``: the
step between neighbouring pixels across window edges against all other rows and columns; ``--measure`` does only
that, on images already generated).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

# Class ids of the default model's table: background (fields), building, woodland, water, road.
BACKGROUND, BUILDING, WOODLAND, WATER, ROAD = range(5)
PROMPT = "aerial image of fields, woods and a village"


def smooth_noise(size: int, cell: int, rng: np.random.Generator) -> np.ndarray:
    """Value noise: a random grid every ``cell`` pixels, bilinearly interpolated to size × size, in [0, 1]."""
    import torch
    import torch.nn.functional as F

    grid = torch.from_numpy(rng.random((1, 1, size // cell + 2, size // cell + 2)).astype(np.float32))
    up = F.interpolate(grid, scale_factor=cell, mode="bilinear", align_corners=False)
    return up[0, 0, :size, :size].numpy()


def scene_layout(size: int, seed: int = 0) -> np.ndarray:
    """A size × size uint8 class-index layout of a rural scene: the same generator whatever the size, with
    features about as large as in 256-px training tiles (fields and woods of 100s of px, roads 8 px wide)."""
    rng = np.random.default_rng(seed)
    layout = np.full((size, size), BACKGROUND, np.uint8)
    layout[smooth_noise(size, 192, rng) > 0.62] = WOODLAND
    layout[smooth_noise(size, 256, rng) > 0.8] = WATER
    for _ in range(max(1, size // 512)):
        for axis in (0, 1):
            at = int(rng.integers(32, size - 32))
            if axis == 0:
                layout[at : at + 8, :] = ROAD
            else:
                layout[:, at : at + 8] = ROAD
    roads = np.argwhere(layout == ROAD)
    for _ in range(size * size // 20000):
        y, x = roads[int(rng.integers(len(roads)))] + rng.integers(-40, 40, 2)
        h, w = rng.integers(10, 24, 2)
        if 0 <= y < size - h and 0 <= x < size - w and (layout[y : y + h, x : x + w] != ROAD).all():
            layout[y : y + h, x : x + w] = BUILDING
    return layout


def write_layout(path: Path, layout: np.ndarray, pixel_size: float = 0.5) -> None:
    """The layout as a one-band GeoTIFF in UTM 34N (LandCover.ai's Poland), ``pixel_size`` m per pixel."""
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "GTiff",
        "height": layout.shape[0],
        "width": layout.shape[1],
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32634",
        "transform": from_origin(380000.0, 5600000.0, pixel_size, pixel_size),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(layout, 1)


def run_size(size: int, out: Path, steps: int | None, seed: int) -> dict:
    layout_path = out / f"scene-{size}.tif"
    write_layout(layout_path, scene_layout(size, seed))
    images = out / f"generated-{size}"
    command = [
        sys.executable, "-m", "terrasynth.cli", "generate", "--layout", str(layout_path), "--n", "1",
        "--seed", str(seed), "--prompt", PROMPT, "--out", str(images),
        "--max-pixels", str(size * size), "--overwrite",
    ]  # fmt: skip
    if steps is not None:
        command += ["--steps", str(steps)]
    # A fresh process per size, so that RUSAGE_CHILDREN's maximum is this size's alone.
    code = (
        "import resource, subprocess, sys, time; start = time.perf_counter(); "
        "rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(rc, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{size}: the measuring process failed:\n{done.stderr[-2000:]}")
    rc, seconds, maxrss_kib = done.stdout.split()[-3:]
    if int(rc) != 0:
        raise SystemExit(f"{size}: terrasynth generate exited {rc}:\n{done.stderr[-2000:]}")
    written = sorted(images.glob(f"scene-{size}-*.tif"))
    preview = out / f"scene-{size}-preview.png"
    pixels = _preview(written[0], preview)
    at_edges, elsewhere, percentile = seam_contrast(pixels)
    return {
        "size": size,
        "steps": steps,
        "seconds": round(float(seconds), 1),
        "peak_rss_gib": round(int(maxrss_kib) / 2**20, 3),
        "step_at_window_edges": round(at_edges, 4),
        "step_elsewhere": round(elsewhere, 4),
        "edge_percentile": round(percentile, 1),
        "image": str(written[0]),
        "preview": str(preview),
    }


def seam_contrast(pixels: np.ndarray, draws: int = 5000) -> tuple[float, float, float]:
    """Seams, measured: the mean absolute difference (0-255 units) between neighbouring pixels across the default
    model's window edges (rows and columns where a 256-px window starts or ends inside the scene); the same across
    every other pair of neighbouring rows and columns; and the percentile of the first among ``draws`` random sets
    of as many rows and columns (a seam puts it near 100, content alone anywhere)."""
    from terrasynth.generate.multidiffusion import Windows

    image = pixels[..., :3].astype(np.float32)
    down, window = 4, 64  # the default model: 4× autoencoder, 256-px working size
    windows = Windows.cover((image.shape[0] // down, image.shape[1] // down), window)
    lines, at_edge = [], []
    for axis in (0, 1):
        length = image.shape[axis]
        starts = {c[axis] * down for c in windows.corners} | {(c[axis] + window) * down for c in windows.corners}
        edges = sorted(e for e in starts if 0 < e < length)
        lines.append(np.abs(np.diff(image, axis=axis)).mean(axis=(1 - axis, 2)))  # step between i and i + 1
        mask = np.zeros(length - 1, bool)
        mask[[e - 1 for e in edges]] = True
        at_edge.append(mask)
    lines, at_edge = np.concatenate(lines), np.concatenate(at_edge)
    if not at_edge.any():  # one window: no edge inside the scene
        return float("nan"), float(lines.mean()), float("nan")
    mean_at_edges = float(lines[at_edge].mean())
    rng = np.random.default_rng(0)
    random_sets = [lines[rng.choice(len(lines), int(at_edge.sum()), replace=False)].mean() for _ in range(draws)]
    percentile = 100 * float(np.mean(np.array(random_sets) < mean_at_edges))
    return mean_at_edges, float(lines[~at_edge].mean()), percentile


def _preview(tif: Path, preview: Path, side: int = 1024) -> np.ndarray:
    """Writes a downscaled copy of the image; returns the full image (H×W×bands)."""
    import rasterio
    from PIL import Image

    with rasterio.open(tif) as src:
        array = src.read().transpose(1, 2, 0)
    image = Image.fromarray(array[..., :3])
    image.thumbnail((side, side), Image.LANCZOS)
    image.save(preview, optimize=True)
    return array


def seam_figure(tif: Path, out: Path, seed: int = 0, corner: tuple[int, int] = (1096, 1196)) -> None:
    """docs/figures/large_layout.png: the generated scene ``tif`` (made with ``seed``) downscaled, a 320-px crop
    at ``corner`` (row, column) at full resolution, and the same crop from the scene's layout sampled as four
    separate 256-px tiles (the crop centred on where they meet)."""
    import rasterio
    import torch
    from PIL import Image, ImageDraw

    from terrasynth.generate.pipeline import LayoutToImagePipeline
    from terrasynth.models.registry import shipped_model_path

    with rasterio.open(tif) as src:
        scene = src.read().transpose(1, 2, 0)[..., :3]
    layout = torch.from_numpy(scene_layout(scene.shape[0], seed).astype(np.int64))
    pipeline = LayoutToImagePipeline.from_pretrained(shipped_model_path())
    top, left = corner[0] - 96, corner[1] - 96  # the four tiles' corner: the crop starts 96 px inside them
    tiles = np.zeros((512, 512, 3), np.uint8)
    for y in (0, 256):
        for x in (0, 256):
            tile = layout[top + y : top + y + 256, left + x : left + x + 256]
            image = pipeline(PROMPT, layout=tile, seed=seed).images[0]
            tiles[y : y + 256, x : x + 256] = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    side, crop = 640, 320
    canvas = Image.new("RGB", (side + 8 + crop, side), (255, 255, 255))
    canvas.paste(Image.fromarray(scene).resize((side, side), Image.LANCZOS), (0, 0))
    canvas.paste(Image.fromarray(scene[corner[0] : corner[0] + crop, corner[1] : corner[1] + crop]), (side + 8, 0))
    canvas.paste(Image.fromarray(tiles[96 : 96 + crop, 96 : 96 + crop]), (side + 8, crop))
    draw = ImageDraw.Draw(canvas)
    f = side / scene.shape[0]
    box = [corner[1] * f, corner[0] * f, (corner[1] + crop) * f, (corner[0] + crop) * f]
    draw.rectangle(box, outline=(255, 255, 0), width=2)
    size = scene.shape[0]
    labels = (
        ((6, 6), f"{size} x {size} layout, windows fused (downscaled)"),
        ((side + 14, 6), "yellow box, full res: windows fused"),
        ((side + 14, crop + 6), "same: 256-px tiles sampled apart"),
    )
    for (x, y), text in labels:
        draw.rectangle([x - 3, y - 3, x + 6 * len(text) + 3, y + 12], fill=(0, 0, 0))
        draw.text((x, y), text, fill=(255, 255, 255))
    # A 192-colour palette keeps the file under 500 kB.
    canvas.quantize(colors=192, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
        out, optimize=True
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own, 13)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/large_layouts")
    parser.add_argument("--measure", nargs="+", metavar="TIF", help="only measure seams in these generated images")
    parser.add_argument("--figure", metavar="TIF", help="only make docs/figures/large_layout.png from this image")
    args = parser.parse_args(argv)
    if args.figure:
        seam_figure(Path(args.figure), Path("docs/figures/large_layout.png"), args.seed)
        return
    if args.measure:
        import rasterio

        for path in args.measure:
            with rasterio.open(path) as src:
                at_edges, elsewhere, percentile = seam_contrast(src.read().transpose(1, 2, 0))
            steps = f"step across window edges {at_edges:.2f}, elsewhere {elsewhere:.2f}"
            print(f"{path}: {steps}, percentile {percentile:.0f}")
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    for size in args.sizes:
        row = run_size(size, out, args.steps, args.seed)
        row["omp_num_threads"] = threads
        print(
            f"{size}×{size}: {row['seconds']:.0f} s, peak RSS {row['peak_rss_gib']:.2f} GiB "
            f"({row['steps'] or 'default'} steps, OMP_NUM_THREADS={threads}); mean step between neighbouring pixels "
            f"across window edges {row['step_at_window_edges']:.2f}, elsewhere {row['step_elsewhere']:.2f} (0-255), "
            f"percentile {row['edge_percentile']:.0f} among random sets of as many rows and columns",
            flush=True,
        )
        print(json.dumps(row), flush=True)
    steps = f" --steps {args.steps}" if args.steps else ""
    sizes = " ".join(map(str, args.sizes))
    print(f"command: OMP_NUM_THREADS={threads} python benchmarks/large_layouts.py --sizes {sizes}{steps} --out {out}")


if __name__ == "__main__":
    main()
