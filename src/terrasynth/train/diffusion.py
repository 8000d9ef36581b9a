"""Train the embedded layout/text-to-image model on cached latents.

The autoencoder is frozen, so each training image is encoded once (posterior mean and std, kept in the run
folder) and each step draws a fresh latent sample from that posterior, as latent diffusion training does.
Augmentation (the 8 flips/rotations) is applied to latent and layout together. Loss: v-prediction
(Salimans & Ho 2022) with Min-SNR-γ weighting (Hang et al. 2023), which speeds up convergence of small models.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data.captions import SCENE_TEMPLATES, caption_for_scene
from ..data.grids import image_grid, write_png
from ..data.paired_tiles import PairedTiles
from ..data.scene_folder import SceneFolder
from ..data.transforms import Resize, rotate_flip
from ..files import atomic_path, read_json, write_json_atomic
from ..models.embedded import EmbeddedDiffusionModel, EmbeddedModelConfig, layout_to_channels
from .data import open_split
from .export import build_model, export_model
from .layout_consistency import consistency_loss, load_or_train_segmenter, predicted_clean
from .run import EMA, POSTERIOR_CHOICES, TrainingRun, learning_rate_at, step_generator

log = logging.getLogger(__name__)


SNR_WEIGHTINGS = ("min-snr", "min-snr+1", "none")


@dataclass(frozen=True)
class DiffusionTrainConfig:
    paired_roots: tuple[str, ...] = ()
    scene_roots: tuple[str, ...] = ()
    output_dir: str = "runs/diffusion"
    model: EmbeddedModelConfig = field(default_factory=EmbeddedModelConfig)
    autoencoder_path: str | None = None
    init_from: str | None = None
    resolution: int = 256
    batch_size: int = 16
    learning_rate: float = 2e-4
    warmup_steps: int = 200
    max_steps: int = 10000
    lr_decay_steps: int = 0  # linear decay to zero over the last this-many steps (0: constant after warm-up)
    ema_decay: float = 0.999
    drop_prompt: float = 0.1
    drop_layout: float = 0.1
    min_snr_gamma: float = 5.0
    # "min-snr": Hang et al. 2023 (x0-loss weight min(SNR, γ)), which fades to zero at high noise;
    # "min-snr+1": x0-loss weight min(SNR + 1, γ), i.e. plain v-loss at high noise, where the layout decides
    # the picture (and the only sensible choice with a zero terminal SNR); "none": plain loss.
    snr_weighting: str = "min-snr"
    crop: int | None = None  # train on random crops of this many pixels (None: whole tiles)
    # Latents the denoiser learns: "sample" (posterior mean + std·ε) or "mode" (the mean).
    posterior: str = "sample"
    # Layout-consistency loss (train/layout_consistency.py): weight of the latent segmenter's cross-entropy on the
    # denoiser's clean-latent estimate at timesteps below the maximum; 0 turns it off. The segmenter is trained
    # for latent_segmenter_steps on the run's cached latents before the first diffusion step.
    layout_consistency_weight: float = 0.0
    layout_consistency_max_timestep: int = 400
    latent_segmenter_steps: int = 400
    # One loss weight per layout class: each latent pixel's loss is weighted by its layout's class shares, so a
    # thin, rare class (roads) can count for more than its area. Samples without a layout (or with it dropped for
    # guidance) weigh 1 everywhere. None: every pixel weighs the same.
    layout_class_loss_weights: tuple[float, ...] | None = None
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    validate_every: int = 1000
    validation_steps: int = 20
    log_every: int = 25
    seed: int = 0

    def __post_init__(self):
        if not self.paired_roots and not self.scene_roots:
            raise ValueError("give at least one dataset (paired_roots or scene_roots)")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        if min(self.batch_size, self.checkpoint_every, self.log_every) < 1 or self.max_steps < 0:
            raise ValueError("batch_size, checkpoint_every and log_every must be at least 1, max_steps at least 0")
        if not 0 <= self.lr_decay_steps <= self.max_steps:
            raise ValueError("lr_decay_steps must be between 0 and max_steps")
        if self.model.autoencoder is not None and not self.autoencoder_path and not self.init_from:
            raise ValueError("a latent model needs autoencoder_path (a trained autoencoder) or init_from")
        if self.model.mean_prior is not None:
            raise ValueError("model.mean_prior is fitted at export (terrasynth export --mean-prior DATA), not trained")
        if self.resolution % self.model.size_multiple:
            raise ValueError(f"resolution must be a multiple of {self.model.size_multiple}")
        if self.crop is not None and (self.crop % self.model.size_multiple or not 0 < self.crop <= self.resolution):
            raise ValueError(f"crop must be a multiple of {self.model.size_multiple} and at most the resolution")
        if self.posterior not in POSTERIOR_CHOICES:
            raise ValueError(f"posterior must be one of {POSTERIOR_CHOICES}, got {self.posterior!r}")
        if self.snr_weighting not in SNR_WEIGHTINGS:
            raise ValueError(f"snr_weighting must be one of {SNR_WEIGHTINGS}, got {self.snr_weighting!r}")
        if self.paired_roots and self.model.class_table is None:
            raise ValueError("paired data needs a model with a class table")
        if self.layout_consistency_weight < 0:
            raise ValueError("layout_consistency_weight must be non-negative")
        if self.layout_consistency_weight and not self.paired_roots:
            raise ValueError("layout_consistency_weight needs paired data (layouts to be consistent with)")
        if self.layout_consistency_weight and not (
            0 < self.layout_consistency_max_timestep <= self.model.num_train_timesteps
        ):
            raise ValueError("layout_consistency_max_timestep must be in 1..num_train_timesteps")
        if self.layout_class_loss_weights is not None:
            classes = max(self.model.num_layout_channels - 1, 0)
            if not self.paired_roots or len(self.layout_class_loss_weights) != classes:
                raise ValueError(
                    f"layout_class_loss_weights needs paired data and one weight per layout class ({classes})"
                )
            if min(self.layout_class_loss_weights) <= 0:
                raise ValueError("layout_class_loss_weights must be positive")


@dataclass
class LatentCache:
    """Posterior mean/std of every training image, layout class shares at latent size, and captions."""

    mean: torch.Tensor  # N×C×h×w
    std: torch.Tensor
    layouts: torch.Tensor  # N×(K+1)×h×w, zeros where a sample has no layout
    captions: list[list[str]]  # caption choices per sample
    labels: torch.Tensor  # scene-class index, −1 for none


def _dataset_fingerprint(config: DiffusionTrainConfig, vae_sha: str) -> str:
    digest = hashlib.sha256(vae_sha.encode())
    for root in config.paired_roots + config.scene_roots:
        digest.update(str(Path(root).resolve()).encode())
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                digest.update(f"{path.relative_to(root)}:{path.stat().st_size}".encode())
    digest.update(str(config.resolution).encode())
    return digest.hexdigest()[:16]


@torch.no_grad()
def build_latent_cache(
    model: EmbeddedDiffusionModel, config: DiffusionTrainConfig, progress: bool = True
) -> LatentCache:
    resize = Resize(config.resolution)
    class_table = model.config.layout_classes
    sources = [(PairedTiles(root, "train", resize, class_table=class_table), "paired") for root in config.paired_roots]
    sources += [(SceneFolder(root, "train", resize), "scene") for root in config.scene_roots]
    scene_classes = list(model.config.scene_classes)
    means, stds, layouts, captions, labels = [], [], [], [], []
    latent_size = (config.resolution // model.config.downsampling,) * 2
    num_classes = model.config.num_layout_channels - 1
    total = sum(len(d) for d, _ in sources)
    bar = tqdm(total=total, disable=not progress, desc="encoding latents")
    for dataset, kind in sources:
        for start in range(0, len(dataset), 16):
            samples = [dataset[i] for i in range(start, min(start + 16, len(dataset)))]
            images = torch.stack([s["image"] for s in samples]).to(model.device)
            if model.vae is None:
                mean, std = images * 2 - 1, torch.zeros_like(images)
            else:
                posterior = model.vae.encode(images * 2 - 1).latent_dist
                mean, std = posterior.mean, posterior.std
            means.append(mean.half().cpu())
            stds.append(std.half().cpu())
            if kind == "paired":
                batch_layout = torch.stack([s["layout"] for s in samples])
                layouts.append(layout_to_channels(batch_layout, num_classes, len(samples), latent_size).half())
                captions += [[s["caption"]] for s in samples]
                labels += [-1] * len(samples)
            else:
                if num_classes >= 0 and model.config.class_table is not None:
                    layouts.append(torch.zeros(len(samples), num_classes + 1, *latent_size, dtype=torch.half))
                captions += [[caption_for_scene(s["class_name"], t) for t in SCENE_TEMPLATES] for s in samples]
                labels += [
                    scene_classes.index(s["class_name"]) if s["class_name"] in scene_classes else -1 for s in samples
                ]
            bar.update(len(samples))
    bar.close()
    layout_tensor = torch.cat(layouts) if layouts else torch.zeros(total, 0, *latent_size, dtype=torch.half)
    return LatentCache(torch.cat(means), torch.cat(stds), layout_tensor, captions, torch.tensor(labels))


def save_latent_cache(cache: LatentCache, path: Path, fingerprint: str) -> None:
    with atomic_path(path.with_suffix(".safetensors")) as tmp:
        save_file({"mean": cache.mean, "std": cache.std, "layouts": cache.layouts, "labels": cache.labels}, tmp)
    write_json_atomic(path.with_suffix(".json"), {"fingerprint": fingerprint, "captions": cache.captions})


def load_latent_cache(path: Path, fingerprint: str) -> LatentCache | None:
    meta_path, tensor_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not (meta_path.is_file() and tensor_path.is_file()):
        return None
    meta = read_json(meta_path)
    if meta.get("fingerprint") != fingerprint:
        return None
    tensors = load_file(tensor_path)
    return LatentCache(tensors["mean"], tensors["std"], tensors["layouts"], meta["captions"], tensors["labels"])


def train_diffusion(config: DiffusionTrainConfig, resume: str | None = None, progress: bool = True) -> Path:
    """Train and return the folder of the exported EMA model (``output_dir/model``)."""
    from accelerate import Accelerator

    accelerator = Accelerator()
    torch.manual_seed(config.seed)
    model = build_model(config.model, config.init_from, config.autoencoder_path)
    model.vae.requires_grad_(False) if model.vae is not None else None
    validation = _validation_batch(model, config)  # opens every dataset: a bad one fails before the run dir
    run = TrainingRun(config.output_dir, config, config.keep_checkpoints)
    trainable = torch.nn.ModuleDict({"unet": model.unet, "condition": model.condition})
    ema = EMA(trainable, config.ema_decay)
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=config.learning_rate, weight_decay=0.01)
    step = run.resume(resume, {"model": trainable, "ema": ema.model}, optimizer)
    running = run.resumed_state.get("running_loss")
    running_consistency = run.resumed_state.get("running_consistency")

    vae_sha = (
        hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.vae.parameters())).hexdigest()
        if model.vae is not None
        else "pixels"
    )
    fingerprint = _dataset_fingerprint(config, vae_sha)
    cache_path = run.dir / "latent-cache"
    cache = load_latent_cache(cache_path, fingerprint)
    if cache is None:
        cache = build_latent_cache(model, config, progress)
        save_latent_cache(cache, cache_path, fingerprint)
    text_embeddings = _embed_captions(model, cache)
    noise_scheduler = model.config.noise_scheduler()
    alphas_cumprod = noise_scheduler.alphas_cumprod
    segmenter = None
    if config.layout_consistency_weight:
        segmenter = load_or_train_segmenter(
            run.dir,
            cache.mean,
            cache.layouts,
            model.scaling_factor,
            config.latent_segmenter_steps,
            config.seed,
            progress,
        ).to(accelerator.device)

    trainable, optimizer = accelerator.prepare(trainable, optimizer)
    device = accelerator.device
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc="diffusion")
    while step < config.max_steps:
        lr = learning_rate_at(step, config.learning_rate, config.warmup_steps, config.max_steps, config.lr_decay_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # Every random choice of this step comes from (seed, step): a resumed run repeats it exactly.
        generator = step_generator(config.seed, step)
        index = torch.randint(0, len(cache.mean), (config.batch_size,), generator=generator)
        mean, std = cache.mean[index].float(), cache.std[index].float()
        noise = torch.randn(mean.shape, generator=generator)  # drawn either way: the same stream for both choices
        latents = (mean if config.posterior == "mode" else mean + std * noise) * model.scaling_factor
        layouts = cache.layouts[index].float()
        rotations = torch.randint(0, 4, (config.batch_size,), generator=generator).tolist()
        flips = (torch.rand(config.batch_size, generator=generator) < 0.5).tolist()
        latents = torch.stack([rotate_flip(x, k, f) for x, k, f in zip(latents, rotations, flips)])
        layouts = torch.stack([rotate_flip(x, k, f) for x, k, f in zip(layouts, rotations, flips)])
        if config.crop is not None and config.crop < config.resolution:
            latents, layouts = _random_crop(latents, layouts, config.crop // model.config.downsampling, generator)
        latents, layouts = latents.to(device), layouts.to(device)
        choices = torch.rand(config.batch_size, generator=generator).tolist()
        prompts = [
            cache.captions[i][int(u * len(cache.captions[i]))] for i, u in zip(index.tolist(), choices, strict=True)
        ]
        keep_prompt = torch.rand(config.batch_size, generator=generator) >= config.drop_prompt
        keep_layout = torch.rand(config.batch_size, generator=generator) >= config.drop_layout
        unwrapped = accelerator.unwrap_model(trainable)
        if model.config.conditioning == "text":
            embeds = torch.stack([text_embeddings[p] for p in prompts]).to(device)
            condition = unwrapped["condition"](config.batch_size, text_embeds=embeds, keep=keep_prompt.to(device))
        elif model.config.conditioning == "class":
            labels = cache.labels[index]
            keep = keep_prompt & (labels >= 0)
            condition = unwrapped["condition"](
                config.batch_size, class_ids=labels.clamp(min=0).to(device), keep=keep.to(device)
            )
        else:
            condition = unwrapped["condition"](config.batch_size)
        if layouts.shape[1]:
            layouts = layouts * keep_layout.view(-1, 1, 1, 1).to(device)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (config.batch_size,), generator=generator
        )
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        if model.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        elif model.config.prediction_type == "epsilon":
            target = noise
        else:
            target = latents
        model_input = torch.cat([noisy, layouts], 1) if layouts.shape[1] else noisy
        prediction = unwrapped["unet"](model_input, timesteps.to(device), class_labels=condition).sample
        snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
        weight = _snr_weight(snr, config, model.config.prediction_type).to(device)
        pixel_loss = F.mse_loss(prediction, target, reduction="none")
        if config.layout_class_loss_weights is not None:
            pixel_loss = pixel_loss * layout_loss_weight_map(layouts, config.layout_class_loss_weights)
        loss = (weight * pixel_loss.mean((1, 2, 3))).mean()
        consistency = None
        if segmenter is not None and layouts.shape[1]:
            clean = predicted_clean(noisy, prediction, timesteps, alphas_cumprod, model.config.prediction_type)
            consistency, counted = consistency_loss(
                segmenter, clean, layouts, timesteps, config.layout_consistency_max_timestep
            )
            loss = loss + config.layout_consistency_weight * consistency
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(trainable.parameters(), 1.0)
        optimizer.step()
        step += 1
        ema.update(accelerator.unwrap_model(trainable), step)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if consistency is not None and counted:  # a batch with no eligible sample does not enter the mean
            running_consistency = (
                consistency.item()
                if running_consistency is None
                else (0.98 * running_consistency + 0.02 * consistency.item())
            )
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if step % config.log_every == 0:
            extra = {} if running_consistency is None else {"layout_consistency": running_consistency}
            run.log_metrics(step, loss=running, lr=lr, **extra)
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            run.checkpoint(
                step,
                {"model": accelerator.unwrap_model(trainable), "ema": ema.model},
                optimizer,
                {"running_loss": running, "running_consistency": running_consistency},
            )
        if config.validate_every and (step % config.validate_every == 0 or step == config.max_steps):
            _validate(model, ema.model, validation, run, step, config.validation_steps)
    bar.close()
    return export_model(model, ema.model, run.dir / "model")


def _random_crop(latents, layouts, size: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random window per sample, the same for its latent and its layout."""
    height, width = latents.shape[-2:]
    tops = torch.randint(0, height - size + 1, (len(latents),), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (len(latents),), generator=generator).tolist()
    crop = lambda t, i: t[i, :, tops[i] : tops[i] + size, lefts[i] : lefts[i] + size]  # noqa: E731
    return (
        torch.stack([crop(latents, i) for i in range(len(latents))]),
        torch.stack([crop(layouts, i) for i in range(len(layouts))]),
    )


def layout_loss_weight_map(layouts: torch.Tensor, class_weights: tuple[float, ...]) -> torch.Tensor:
    """N×1×h×w loss weights from layout class shares (N×(K+1)×h×w, the last channel "layout given"):
    1 + Σ_k share_k · (w_k − 1), which is Σ_k share_k · w_k where a layout is given and 1 where it is not."""
    excess = torch.tensor(class_weights, dtype=layouts.dtype, device=layouts.device) - 1
    return 1 + (layouts[:, : len(class_weights)] * excess.view(1, -1, 1, 1)).sum(1, keepdim=True)


def _snr_weight(snr: torch.Tensor, config: DiffusionTrainConfig, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weight, written as a weight on the x0 error and converted to the prediction type."""
    gamma = config.min_snr_gamma
    if config.snr_weighting == "none" or gamma <= 0:
        return torch.ones_like(snr)
    x0_weight = torch.clamp(snr + 1 if config.snr_weighting == "min-snr+1" else snr, max=gamma)
    if prediction_type == "v_prediction":  # v error² = (SNR + 1) · x0 error²
        return x0_weight / (snr + 1)
    if prediction_type == "epsilon":  # ε error² = SNR · x0 error²
        return x0_weight / snr
    return x0_weight


def _embed_captions(model: EmbeddedDiffusionModel, cache: LatentCache) -> dict[str, torch.Tensor]:
    if model.config.conditioning != "text":
        return {}
    from ..models.text import default_text_encoder

    prompts = sorted({c for choices in cache.captions for c in choices})
    return dict(zip(prompts, default_text_encoder().encode(prompts)))


def _validation_batch(model: EmbeddedDiffusionModel, config: DiffusionTrainConfig) -> list[dict]:
    """A fixed handful of val samples (layouts and scene prompts) drawn in every validation grid."""
    resize = Resize(config.resolution)
    samples = []
    for root in config.paired_roots:
        data = open_split(PairedTiles, root, "val", resize, class_table=model.config.layout_classes)
        samples += [data[i] for i in range(0, len(data), max(1, len(data) // 4))][:4]
    for root in config.scene_roots:
        data = open_split(SceneFolder, root, "val", resize)
        samples += [data[i] for i in range(0, len(data), max(1, len(data) // 4))][:4]
    return samples


@torch.no_grad()
def _validate(model, ema_modules, samples, run: TrainingRun, step: int, steps: int) -> None:
    from ..generate.pipeline import LayoutToImagePipeline

    snapshot = EmbeddedDiffusionModel(
        model.config,
        model.vae,
        ema_modules["unet"],
        ema_modules["condition"],
        colour_correction=model.colour_correction,
    )
    pipeline = LayoutToImagePipeline(snapshot)
    tiles = []
    for sample in samples:
        layout = sample.get("layout")
        out = pipeline(sample["caption"], layout=layout, num_images=1, num_inference_steps=steps, seed=step)
        shown = model.config.layout_classes.render(layout) if layout is not None else None
        tiles += [
            sample["image"],
            torch.from_numpy(shown).permute(2, 0, 1) / 255.0 if shown is not None else torch.ones_like(sample["image"]),
            out.images[0],
        ]
    write_png(run.dir / "validation" / f"step-{step:06d}.png", image_grid(tiles, columns=6))
    ema_modules.train(False)


__all__ = ["DiffusionTrainConfig", "train_diffusion"]
