"""Speed of the embedded model: training step time and generation throughput at 64 and 256 px.

    python benchmarks/speed.py [--model default] [--batch 16] [--steps 10]

Prints a table and the command that made it. Timings are wall-clock on this machine's CPU threads
(torch.get_num_threads() is printed); the first call of each shape is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from terrasynth.generate.pipeline import LayoutToImagePipeline, resolve_steps
from terrasynth.models.embedded import EmbeddedDiffusionModel
from terrasynth.models.registry import resolve_model_path


def time_generation(pipeline, size: int, batch: int, steps: int, repeats: int) -> float:
    layout = torch.zeros(size, size, dtype=torch.long)
    layout[: size // 2] = 2
    pipeline("aerial image", layout=layout, num_images=2, num_inference_steps=2, seed=0)  # warm-up
    start = time.perf_counter()
    for r in range(repeats):
        pipeline(
            "aerial image: 50 % woodland",
            layout=layout,
            num_images=batch,
            num_inference_steps=steps,
            seed=r,
            batch_size=batch,
        )
    return (time.perf_counter() - start) / repeats


def time_training_step(model: EmbeddedDiffusionModel, size: int, batch: int, repeats: int) -> float:
    config = model.config
    unet, condition = model.unet.train().requires_grad_(True), model.condition.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(list(unet.parameters()) + list(condition.parameters()), lr=1e-5)
    latent = size // config.downsampling
    scheduler = config.noise_scheduler()

    def step():
        latents = torch.randn(batch, config.image_channels, latent, latent)
        layouts = model.layout_channels(torch.randint(0, 5, (batch, size, size)), batch, (latent, latent))
        cond = condition(batch, text_embeds=torch.randn(batch, config.text_dim))
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(latents)
        pred = model.predict(scheduler.add_noise(latents, noise, t), t, layouts, cond)
        loss = (pred - scheduler.get_velocity(latents, noise, t)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    model = EmbeddedDiffusionModel.from_pretrained(resolve_model_path(args.model))
    pipeline = LayoutToImagePipeline(model)
    args.steps = resolve_steps(pipeline, args.steps)
    rows = {}
    for size in (64, 256):
        seconds = time_generation(pipeline, size, args.batch, args.steps, args.repeats)
        rows[f"generate_{size}px_images_per_s"] = args.batch / seconds
        rows[f"generate_{size}px_batch_s"] = seconds
    rows["train_step_256px_tile_s"] = time_training_step(model, 256, args.batch, max(2, args.repeats))
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"batch {args.batch}, {args.steps} DPM-Solver++ steps, classifier-free guidance (2 UNet passes/step)")
    print(f"{'figure':36s} value")
    for key, value in rows.items():
        print(f"{key:36s} {value:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
