"""Sample grid of a model on validation layouts of a paired-tiles set, and the loss curve of its training run.

    python benchmarks/sample_grid.py --data ../shared/data/landcoverai_pairs --run runs/diffusion \
        --out docs/ [--model default] [--n 8] [--steps 10] [--select varied|spread]

Writes OUT/sample_grid.png (rows: layout | real tile | generated ×3, seeds 3·row to 3·row + 2) and
OUT/loss_curve.png, and prints the command, the tiles picked and the training run's step count and last loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from terrasynth.data.grids import image_grid, write_png  # noqa: E402
from terrasynth.data.paired_tiles import PairedTiles  # noqa: E402
from terrasynth.generate.pipeline import LayoutToImagePipeline  # noqa: E402
from terrasynth.models.registry import resolve_model_path  # noqa: E402
from terrasynth.train.run import read_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--run", help="training run folder with metrics.jsonl (for the loss curve)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    parser.add_argument("--guidance", type=float, help="default: the model's own")
    parser.add_argument(
        "--select",
        choices=("varied", "spread"),
        default="varied",
        help="varied: the tiles whose layouts hold the most classes (a split of mostly water shows more than water); "
        "spread: evenly spaced through the split",
    )
    args = parser.parse_args()
    out = Path(args.out)
    print(f"command: python {' '.join(sys.argv)}")
    pipeline = LayoutToImagePipeline.from_pretrained(resolve_model_path(args.model))
    data = PairedTiles(args.data, args.split, class_table=pipeline.model.config.layout_classes)
    indices = pick_tiles(data, args.n, args.select)
    print(f"{args.split} tiles ({args.select}): {indices}")
    tiles = []
    for row, index in enumerate(indices):
        sample = data[index]
        generated = pipeline(
            sample["caption"],
            layout=sample["layout"],
            num_images=3,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            seed=3 * row,
        ).images
        rendered = torch.from_numpy(data.class_table.render(sample["layout"])).permute(2, 0, 1) / 255.0
        tiles += [rendered, sample["image"], *generated]
    write_png(out / "sample_grid.png", image_grid(tiles, columns=5))
    print(f"wrote {out / 'sample_grid.png'}: {len(indices)} {args.split} layouts, columns layout | real | generated x3")
    if args.run:
        metrics = [m for m in read_metrics(args.run) if "loss" in m]
        if metrics:
            figure, axis = plt.subplots(figsize=(6, 3.5))
            axis.plot([m["step"] for m in metrics], [m["loss"] for m in metrics])
            axis.set_xlabel("step")
            axis.set_ylabel("training loss (EMA-smoothed, min-SNR weighted)")
            axis.set_yscale("log")
            axis.grid(alpha=0.3)
            figure.tight_layout()
            figure.savefig(out / "loss_curve.png", dpi=120)
            print(f"wrote {out / 'loss_curve.png'}: {metrics[-1]['step']} steps, last loss {metrics[-1]['loss']:.4f}")


def pick_tiles(data: PairedTiles, n: int, select: str, min_share: float = 0.02) -> list[int]:
    """Indices of ``n`` tiles: evenly spaced (``spread``), or those whose layouts have the most classes covering at
    least ``min_share`` of their pixels, ties in split order (``varied``)."""
    if select == "spread":
        return list(range(0, len(data), max(1, len(data) // n)))[:n]
    counts = []
    for index in range(len(data)):
        shares = torch.bincount(data[index]["layout"].flatten().long()).float()
        counts.append(int((shares / shares.sum() >= min_share).sum()))
    return sorted(sorted(range(len(data)), key=lambda i: -counts[i])[:n])


if __name__ == "__main__":
    main()
