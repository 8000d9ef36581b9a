"""Training the pix2pix baseline (Isola et al. 2017): L1 + conditional GAN loss, Adam(2e-4, β₁ = 0.5).

Random crops of the paired tiles (the generator is fully convolutional), the 8 flips/rotations, checkpoints
with rotation and ``--resume latest`` through :class:`~terrasynth.train.run.TrainingRun`; the final generator is
written as ``<output_dir>/model`` (config.json + generator.safetensors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import config_to_dict
from ..data.paired_tiles import PairedTiles
from ..errors import InputError
from ..files import write_json_atomic, write_text_atomic
from ..models.pix2pix import CLASSES_NAME, PatchDiscriminator, Pix2PixConfig, UNetGenerator, save_pix2pix
from .run import TrainingRun, read_metrics, step_generator

log = logging.getLogger(__name__)
BATCH, AUGMENT = 1, 2  # random streams


@dataclass(frozen=True)
class Pix2PixTrainConfig:
    paired_roots: tuple[str, ...] = ("../shared/data/landcoverai_pairs",)
    output_dir: str = "runs/pix2pix"
    split: str = "train"
    crop: int = 128
    batch_size: int = 4
    max_steps: int = 6000
    learning_rate: float = 2e-4
    l1_weight: float = 100.0
    base_channels: int = 32
    depth: int = 6
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    log_every: int = 25
    seed: int = 0

    def __post_init__(self):
        if not self.paired_roots:
            raise ValueError("pix2pix needs at least one paired tiles folder")
        if self.crop < 32:
            raise ValueError("crop must be at least 32 px (the PatchGAN discriminator needs room for its 3 layers)")
        if self.crop % 2**self.depth:
            raise ValueError(f"crop must be a multiple of 2**depth = {2**self.depth}")
        if self.max_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("max_steps, batch_size and checkpoint_every must be positive")


def _load_pairs(config: Pix2PixTrainConfig):
    datasets = [PairedTiles(root, config.split) for root in config.paired_roots]
    table = datasets[0].class_table
    for dataset in datasets[1:]:
        if dataset.class_table.names != table.names:
            raise InputError(dataset.root, "class table differs from the first paired folder's")
    images, layouts = [], []
    for dataset in datasets:
        for index in range(len(dataset)):
            sample = dataset[index]
            if min(sample["layout"].shape) < config.crop:
                raise InputError(dataset.files[index][0], f"tile smaller than the crop size {config.crop}")
            images.append((sample["image"] * 255).round().to(torch.uint8))
            layouts.append(sample["layout"].to(torch.uint8))
    return images, layouts, table


def _batch(images, layouts, config, step):
    generator = step_generator(config.seed, BATCH, step)
    xs, ys = [], []
    for _ in range(config.batch_size):
        index = int(torch.randint(len(images), (), generator=generator))
        image, layout = images[index], layouts[index]
        top = int(torch.randint(image.shape[-2] - config.crop + 1, (), generator=generator))
        left = int(torch.randint(image.shape[-1] - config.crop + 1, (), generator=generator))
        x = image[:, top : top + config.crop, left : left + config.crop].float() / 255
        y = layout[top : top + config.crop, left : left + config.crop].long()
        k, flip = int(torch.randint(4, (), generator=generator)), bool(torch.randint(2, (), generator=generator))
        x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
        if flip:
            x, y = x.flip(-1), y.flip(-1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def train_pix2pix(
    config: Pix2PixTrainConfig, resume: str | None = None, progress: bool = True, dtype: torch.dtype | None = None
) -> Path:
    """Train (or continue) a run; returns the exported model folder ``<output_dir>/model`` (weights in ``dtype``,
    float32 by default, and ``training.json``: steps, wall time, final losses, the config). Resuming a finished
    run re-exports it."""
    images, layouts, table = _load_pairs(config)
    torch.manual_seed(config.seed)
    model_config = Pix2PixConfig(len(table), tuple(table.names), config.base_channels, config.depth)
    generator, discriminator = UNetGenerator(model_config), PatchDiscriminator(model_config)
    optimizers = {
        "optimizer_g": torch.optim.Adam(generator.parameters(), config.learning_rate, betas=(0.5, 0.999)),
        "optimizer_d": torch.optim.Adam(discriminator.parameters(), config.learning_rate, betas=(0.5, 0.999)),
    }
    models = {"generator": generator, "discriminator": discriminator}
    run = TrainingRun(config.output_dir, config, config.keep_checkpoints)
    start = run.resume(resume, models, optimizers)
    generator.train()
    discriminator.train()
    bar = tqdm(
        range(start, config.max_steps),
        disable=not progress,
        desc="training pix2pix",
        initial=start,
        total=config.max_steps,
    )
    for step in bar:
        real, layout = _batch(images, layouts, config, step)
        onehot = generator.layout_to_onehot(layout)
        with torch.random.fork_rng():
            torch.manual_seed(step_generator(config.seed, AUGMENT, step).initial_seed())  # dropout masks
            fake = generator(onehot)
            # discriminator: real pairs → 1, generated pairs → 0 (least squares would also do; the paper uses BCE)
            real_logits = discriminator(onehot, real)
            fake_logits = discriminator(onehot, fake.detach())
            loss_d = 0.5 * (
                F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            )
            optimizers["optimizer_d"].zero_grad(set_to_none=True)
            loss_d.backward()
            optimizers["optimizer_d"].step()
            # generator: fool the discriminator and stay close to the real tile in L1
            fooled = discriminator(onehot, fake)
            loss_gan = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
            loss_l1 = (fake - real).abs().mean()
            loss_g = loss_gan + config.l1_weight * loss_l1
            optimizers["optimizer_g"].zero_grad(set_to_none=True)
            loss_g.backward()
            optimizers["optimizer_g"].step()
        done = step + 1
        if done % config.log_every == 0 or done == config.max_steps:
            run.log_metrics(done, loss_d=loss_d.item(), loss_gan=loss_gan.item(), loss_l1=loss_l1.item())
        if done % config.checkpoint_every == 0 or done == config.max_steps:
            run.checkpoint(done, models, optimizers)
        bar.set_postfix(l1=f"{loss_l1.item():.3f}", d=f"{loss_d.item():.3f}")
    model_dir = save_pix2pix(generator.eval(), Path(config.output_dir) / "model", dtype)
    write_text_atomic(model_dir / CLASSES_NAME, table.to_json())
    write_json_atomic(model_dir / "training.json", training_summary(config))
    return model_dir


def training_summary(config: Pix2PixTrainConfig) -> dict:
    records = read_metrics(config.output_dir)
    wall, last = 0.0, 0.0
    for record in records:  # time_s restarts at 0 in each resumed process
        if record["time_s"] < last:
            wall += last
        last = record["time_s"]
    final = records[-1] if records else {}
    return {
        "kind": "pix2pix",
        "steps": final.get("step", 0),
        "wall_s": round(wall + last, 1),
        "final_losses": {k: v for k, v in final.items() if k.startswith("loss_")},
        "config": config_to_dict(config),
    }
