"""Train the small autoencoder that the embedded model diffuses in.

Loss (as in Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", at CPU size):
L1 reconstruction + a perceptual distance on EfficientNet-Lite0 features + a tiny KL term, and, after
``adversarial_start`` steps, a hinge-loss patch discriminator (Isola et al. 2017) that restores texture an L1
loss blurs away, at a fixed weight or (``adversarial_adaptive``) at the gradient-balanced weight of Esser et al.
2021.

``equivariance_weight`` adds the scale-equivariance term of Skorokhodov et al. 2025 ("Improving the Diffusability
of Autoencoders"): the decoder must turn a 2×- or 4×-down-sampled latent into the equally down-sampled image. With
a KL weight this small, the latents are otherwise spatially white noise (neighbouring latent pixels no more alike
than any two), detail a diffusion model must reproduce exactly and renders as worm-like texture when it misses.
Validation logs ``latent_roughness`` (1 for white noise, near 0 for smooth latents) to watch it.

A trained autoencoder can be refined from ``init_from`` with ``train_encoder`` False: the encoder (and so the
latent space, and every diffusion model trained in it) stays fixed while the decoder learns to sharpen.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..data.grids import image_grid, write_png
from ..data.paired_tiles import PairedTiles
from ..data.transforms import CenterCrop
from ..errors import InputError
from ..files import atomic_path, read_json, write_json_atomic
from ..models.colour_correction import CORRECTION_KINDS, fit_colour_correction
from ..models.embedded import AutoencoderConfig, decoder_depth, grow_decoder, load_autoencoder, save_autoencoder
from ..models.features import EffNetFeatures, perceptual_distance
from .data import image_dataset, open_split
from .run import EMA, POSTERIOR_CHOICES, TrainingRun, step_generator, step_seed

log = logging.getLogger(__name__)

# The sampler step grid that generated_latents and denoised_pairs draw on. It stays at the 10 steps the shipped
# decoders were refined with, whatever a model's default sampling_steps, so that their recipes reproduce.
DECODER_DATA_STEPS = 10

EQUIVARIANCE_FACTORS = (2, 4)  # latent down-sampling factors of the scale-equivariance term, drawn per step


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    paired_roots: tuple[str, ...] = ()
    scene_roots: tuple[str, ...] = ()
    output_dir: str = "runs/autoencoder"
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    crop: int = 128
    batch_size: int = 8
    learning_rate: float = 2e-4
    max_steps: int = 20000
    perceptual_weight: float = 1.0
    color_weight: float = 0.0  # L1 between 8×8-pixel block means: penalises colour shifts the others miss
    # > 0: the mean error of the worst ``peak_fraction`` of pixels, at this weight. A mean L1 barely sees a wrong
    # dot a few pixels wide (a decoder's speck costs 0.06 % of the pixels); this term is mostly made of them.
    peak_weight: float = 0.0
    peak_fraction: float = 0.01
    kl_weight: float = 1e-6
    equivariance_weight: float = 0.0  # scale equivariance (Skorokhodov et al. 2025); smooths the latents
    adversarial_weight: float = 0.05
    adversarial_start: int = 4000
    # True: the adversarial term is scaled each step so that its gradient at the decoder's last layer has the
    # reconstruction losses' norm, times adversarial_weight (Esser et al. 2021, the SD autoencoder's recipe);
    # a fixed weight is either too weak to matter or, early on, strong enough to paint speckles.
    adversarial_adaptive: bool = False
    # The discriminator trains alone for this many steps before adversarial_start, so that the decoder's first
    # adversarial gradients come from a discriminator that already tells real from reconstructed.
    discriminator_warmup: int = 0
    # Std of Gaussian noise added to the latents the decoder is trained on, in the diffusion model's units
    # (latents × scaling factor, about unit variance): a denoiser's latents are a little off the encoder's, and a
    # decoder that never saw such latents can answer a small error with a saturated dot.
    latent_noise: float = 0.0
    # A model folder whose denoiser works in this autoencoder's latent space (so the encoder stays frozen). Before
    # training, its latents for ``generated_latents_count`` training layouts (``generated_latents_size`` px, the
    # model's default guidance) are sampled once and cached in the run folder; each step a batch of crops of
    # them is decoded too, judged by the discriminator alone (no image pairs with them). The decoder so learns to
    # answer the denoiser's imperfect latents with texture a real image has, not with what it was never shown.
    generated_latents_from: str | None = None
    generated_latents_count: int = 256
    generated_latents_size: int = 256
    # A model folder as for generated_latents_from, but paired: ``denoised_pairs_count`` evenly spaced training
    # tiles (``denoised_pairs_size`` px) are encoded, noised and redrawn by the model's last 1 to
    # ``denoised_pairs_max_steps`` sampler steps (SDEdit at DECODER_DATA_STEPS and its default guidance, with the tile's
    # layout and caption), and cached. Each step ``denoised_pairs_batch_size`` aligned crops of these latents are
    # decoded and held to their real tile by the reconstruction losses and the discriminator: the decoder sees the
    # denoiser's own texture errors, anchored to the image they came from (generated_latents has no anchor).
    denoised_pairs_from: str | None = None
    denoised_pairs_count: int = 512
    denoised_pairs_size: int = 256
    denoised_pairs_max_steps: int = 3
    denoised_pairs_batch_size: int = 4
    # > 0: keep an exponential moving average of the decoder's weights at this decay and save it, not the last
    # step's weights: an adversarially trained decoder moves from checkpoint to checkpoint (session 15).
    decoder_ema: float = 0.0
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    validate_every: int = 500
    log_every: int = 25
    seed: int = 0
    init_from: str | None = None  # autoencoder folder, or model folder with a vae/ part, to start from
    train_encoder: bool = True  # False: refine the decoder only; latents (and the scaling factor) stay as they are
    # What the decoder learns to decode: "sample" (mean + std·ε, the SD recipe) or "mode" (the posterior mean).
    # With a tiny KL weight some channels keep a large std; decoding samples then teaches the decoder to shrink
    # what those channels carry (tile colour) towards the average (docs/default_model.md, stage 6).
    posterior: str = "sample"
    # > 0: after training, fit the decoder's colour correction (models.colour_correction) on training images
    # centre-cropped to this size, the size images are generated at; 0: the autoencoder has none.
    colour_correction_size: int = 0
    # "global" (one colour shift per image) or "local" (an offset map from each latent pixel's surroundings)
    colour_correction: str = "global"

    def __post_init__(self):
        if not self.train_encoder and not self.init_from:
            raise ValueError("train_encoder False (decoder only) needs init_from: a trained autoencoder")
        if not self.paired_roots and not self.scene_roots:
            raise ValueError("give at least one dataset (paired_roots or scene_roots)")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        every = (self.batch_size, self.checkpoint_every, self.validate_every, self.log_every)
        if min(every) < 1 or self.max_steps < 0:
            raise ValueError(
                "batch_size, checkpoint_every, validate_every and log_every must be at least 1, max_steps at least 0"
            )
        if self.colour_correction_size < 0 or self.colour_correction_size % self.autoencoder.downsampling:
            raise ValueError(f"colour_correction_size must be 0 or a multiple of {self.autoencoder.downsampling}")
        if self.colour_correction not in CORRECTION_KINDS:
            raise ValueError(f"colour_correction must be one of {CORRECTION_KINDS}, got {self.colour_correction!r}")
        if self.posterior not in POSTERIOR_CHOICES:
            raise ValueError(f"posterior must be one of {POSTERIOR_CHOICES}, got {self.posterior!r}")
        if self.equivariance_weight < 0:
            raise ValueError("equivariance_weight must be non-negative")
        if self.peak_weight < 0 or not 0 < self.peak_fraction <= 1:
            raise ValueError("peak_weight must be non-negative and peak_fraction in (0, 1]")
        if min(self.adversarial_weight, self.discriminator_warmup, self.latent_noise) < 0:
            raise ValueError("adversarial_weight, discriminator_warmup and latent_noise must be non-negative")
        if self.generated_latents_from is not None:
            if self.train_encoder or not self.paired_roots or self.adversarial_weight <= 0:
                raise ValueError(
                    "generated_latents_from needs train_encoder False, paired_roots (their layouts are sampled) "
                    "and adversarial_weight > 0 (only the discriminator judges generated latents)"
                )
            if self.generated_latents_count < 1:
                raise ValueError("generated_latents_count must be at least 1")
            size = self.generated_latents_size
            if size < self.crop or size % self.autoencoder.downsampling:
                raise ValueError(
                    f"generated_latents_size must be at least crop ({self.crop}) and a multiple of "
                    f"{self.autoencoder.downsampling}"
                )
        if self.denoised_pairs_from is not None:
            if self.train_encoder or not self.paired_roots or self.generated_latents_from is not None:
                raise ValueError(
                    "denoised_pairs_from needs train_encoder False and paired_roots (their layouts condition the "
                    "denoiser), and cannot be combined with generated_latents_from"
                )
            if min(self.denoised_pairs_count, self.denoised_pairs_batch_size) < 1:
                raise ValueError("denoised_pairs_count and denoised_pairs_batch_size must be at least 1")
            if not 1 <= self.denoised_pairs_max_steps <= DECODER_DATA_STEPS:
                raise ValueError(f"denoised_pairs_max_steps must be in 1..{DECODER_DATA_STEPS}")
            size = self.denoised_pairs_size
            if size < self.crop or size % self.autoencoder.downsampling:
                raise ValueError(
                    f"denoised_pairs_size must be at least crop ({self.crop}) and a multiple of "
                    f"{self.autoencoder.downsampling}"
                )
        if not 0 <= self.decoder_ema < 1:
            raise ValueError(f"decoder_ema must be in [0, 1), got {self.decoder_ema}")
        if self.decoder_ema and self.train_encoder:
            raise ValueError("decoder_ema averages the decoder of a frozen encoder: set train_encoder False")
        multiple = self.autoencoder.downsampling * (max(EQUIVARIANCE_FACTORS) if self.equivariance_weight else 1)
        if self.crop % multiple:
            why = " × the largest equivariance factor" if self.equivariance_weight else ""
            raise ValueError(f"crop must be a multiple of {multiple} (the autoencoder's down-sampling{why})")


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: one real/fake logit per overlapping patch."""

    def __init__(self, channels: int = 32, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(layers - 1):
            blocks += [nn.Conv2d(width, width * 2, 4, 2, 1), nn.GroupNorm(8, width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        blocks += [nn.Conv2d(width, 1, 4, 1, 1)]
        self.net = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1)


# Independent streams of per-step randomness (see ``step_seed``).
ORDER, AUGMENT, POSTERIOR, SCALING, EQUIVARIANCE, LATENT_NOISE, GENERATED, DENOISED_PAIRS = range(8)


def equivariance_loss(vae, latents: torch.Tensor, images: torch.Tensor, factor: int) -> torch.Tensor:
    """L1 between the decoded ``factor``×-down-sampled latents and the ``factor``×-down-sampled images ([0, 1])."""
    decoded = (vae.decode(F.avg_pool2d(latents, factor)).sample + 1) / 2
    return (decoded - F.avg_pool2d(images, factor)).abs().mean()


def peak_error(reconstruction: torch.Tensor, target: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the largest ``fraction`` of per-pixel errors (L1 over channels, pooled over the batch)."""
    errors = (reconstruction - target).abs().mean(1).flatten()
    return errors.topk(max(1, round(fraction * errors.numel()))).values.mean()


def adaptive_adversarial_weight(
    reconstruction_loss: torch.Tensor, adversarial_loss: torch.Tensor, last_layer: torch.Tensor, limit: float = 1e4
) -> float:
    """‖∇ reconstruction_loss‖ / ‖∇ adversarial_loss‖ at ``last_layer`` (Esser et al. 2021, "Taming
    Transformers", eq. 7): the factor that gives the adversarial gradient the reconstruction gradient's size."""
    reconstruction_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    adversarial_grad = torch.autograd.grad(adversarial_loss, last_layer, retain_graph=True)[0]
    return float((reconstruction_grad.norm() / (adversarial_grad.norm() + 1e-4)).clamp(0.0, limit))


def latent_roughness(latents: torch.Tensor) -> float:
    """RMS difference of horizontally and vertically neighbouring latent pixels over √2 × their std: about 1 for
    spatially white latents, near 0 for smooth ones."""
    dx = latents[..., :, 1:] - latents[..., :, :-1]
    dy = latents[..., 1:, :] - latents[..., :-1, :]
    rms = torch.cat([dx.flatten(), dy.flatten()]).pow(2).mean().sqrt()
    return float(rms / (2**0.5 * latents.std()))


def train_autoencoder(config: AutoencoderTrainConfig, resume: str | None = None, progress: bool = True) -> Path:
    """Train, checkpointing every ``checkpoint_every`` steps; returns the folder of the final autoencoder."""
    from accelerate import Accelerator

    accelerator = Accelerator()
    # Datasets first: a bad one fails before the run folder is made.
    # Crops and flips draw from ``augment``, re-seeded from (seed, step) before each batch is read.
    augment = random.Random(config.seed)
    train_data = image_dataset(config.paired_roots, config.scene_roots, "train", config.crop, rng=augment)
    val_data = image_dataset(config.paired_roots, config.scene_roots, "val", config.crop, augment=False)
    val_images = torch.stack([val_data[i]["image"] for i in range(0, len(val_data), max(1, len(val_data) // 8))][:8])
    batches_per_epoch = len(train_data) // config.batch_size
    if batches_per_epoch == 0:
        roots = ", ".join(config.paired_roots + config.scene_roots)
        raise InputError(
            None,
            f"{roots}: {len(train_data)} training tiles, fewer than batch_size {config.batch_size}",
            "lower batch_size or add tiles",
        )
    run = TrainingRun(config.output_dir, config, config.keep_checkpoints)
    torch.manual_seed(config.seed)
    vae = config.autoencoder.build() if config.init_from is None else load_initial_autoencoder(config)
    discriminator = PatchDiscriminator()
    features = EffNetFeatures().to(accelerator.device)
    if not config.train_encoder:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [p for p in vae.parameters() if p.requires_grad], lr=config.learning_rate, betas=(0.5, 0.9), weight_decay=0.0
    )
    disc_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=config.learning_rate, betas=(0.5, 0.9))
    models = {"vae": vae, "discriminator": discriminator}
    ema = None
    if config.decoder_ema:
        ema = EMA(decoder_part(vae), config.decoder_ema)
        models["decoder-ema"] = ema.model
    optimizers = {"optimizer": optimizer, "discriminator-optimizer": disc_optimizer}
    step = run.resume(resume, models, optimizers)
    generated = None
    if config.generated_latents_from is not None:
        generated = generated_latents(config, vae, run.dir / "generated-latents", progress) / vae.config.scaling_factor
    pairs = None
    if config.denoised_pairs_from is not None:
        pair_latents, pair_images = denoised_pairs(config, vae, run.dir / "denoised-pairs", progress)
        pairs = (pair_latents / vae.config.scaling_factor, pair_images)
    latent_crop = config.crop // config.autoencoder.downsampling
    previewed = generated if pairs is None else pairs[0]
    generated_preview = None if previewed is None else previewed[:8, :, :latent_crop, :latent_crop]
    vae, discriminator, optimizer, disc_optimizer = accelerator.prepare(vae, discriminator, optimizer, disc_optimizer)
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc="autoencoder")
    while step < config.max_steps:
        # Epoch e visits the tiles in an order drawn from (seed, e); a resumed run skips the batches done.
        epoch, done = divmod(step, batches_per_epoch)
        order = torch.randperm(len(train_data), generator=step_generator(config.seed, ORDER, epoch))
        batches = order[: batches_per_epoch * config.batch_size].view(batches_per_epoch, -1)[done:].tolist()
        for indices in batches:
            if step >= config.max_steps:
                break
            augment.seed(step_seed(config.seed, AUGMENT, step))
            batch = torch.utils.data.default_collate([train_data[i] for i in indices])
            images = batch["image"].to(accelerator.device)
            with torch.set_grad_enabled(config.train_encoder):
                posterior = vae.encode(images * 2 - 1).latent_dist
            if config.posterior == "mode":
                latents = posterior.mode()
            else:
                latents = posterior.sample(generator=step_generator(config.seed, POSTERIOR, step))
            if config.latent_noise > 0:
                noise_rng = step_generator(config.seed, LATENT_NOISE, step)
                noise = torch.randn(latents.shape, generator=noise_rng).to(latents.device)
                scaling = accelerator.unwrap_model(vae).config.scaling_factor
                latents = latents + (config.latent_noise / scaling) * noise
            reconstruction = (vae.decode(latents).sample + 1) / 2
            l1 = (reconstruction - images).abs().mean()
            perceptual = perceptual_distance(features, reconstruction.clamp(0, 1), images).mean()
            kl = posterior.kl().mean()
            color = (F.avg_pool2d(reconstruction, 8) - F.avg_pool2d(images, 8)).abs().mean()
            loss = l1 + config.perceptual_weight * perceptual + config.color_weight * color
            if config.peak_weight > 0:
                loss = loss + config.peak_weight * peak_error(reconstruction, images, config.peak_fraction)
            decoded_pairs = None
            if pairs is not None:
                pair_rng = step_generator(config.seed, DENOISED_PAIRS, step)
                factor = config.autoencoder.downsampling
                crops, targets = random_pair_crops(
                    *pairs, config.denoised_pairs_batch_size, latent_crop, factor, pair_rng
                )
                crops, targets = crops.to(accelerator.device), targets.to(accelerator.device)
                decoded_pairs = (vae.decode(crops).sample + 1) / 2
                pair_loss = (
                    (decoded_pairs - targets).abs().mean()
                    + config.perceptual_weight
                    * perceptual_distance(features, decoded_pairs.clamp(0, 1), targets).mean()
                    + config.color_weight * (F.avg_pool2d(decoded_pairs, 8) - F.avg_pool2d(targets, 8)).abs().mean()
                )
                if config.peak_weight > 0:
                    peak = peak_error(decoded_pairs, targets, config.peak_fraction)
                    pair_loss = pair_loss + config.peak_weight * peak
                loss = (loss + pair_loss) / 2
            equivariance = torch.zeros(())
            if config.equivariance_weight > 0:
                factor_rng = step_generator(config.seed, EQUIVARIANCE, step)
                factor = EQUIVARIANCE_FACTORS[int(torch.randint(len(EQUIVARIANCE_FACTORS), (), generator=factor_rng))]
                equivariance = equivariance_loss(vae, latents, images, factor)
                loss = loss + config.equivariance_weight * equivariance
            if config.train_encoder:
                loss = loss + config.kl_weight * kl
            adversarial = torch.zeros(())
            gan_weight = 0.0
            use_gan = config.adversarial_weight > 0 and step >= config.adversarial_start
            train_discriminator = config.adversarial_weight > 0 and (
                step >= config.adversarial_start - config.discriminator_warmup
            )
            decoded_generated = decoded_pairs
            if generated is not None and train_discriminator:
                crops = random_latent_crops(
                    generated, config.batch_size, latent_crop, step_generator(config.seed, GENERATED, step)
                ).to(accelerator.device)
                with torch.set_grad_enabled(use_gan):
                    decoded_generated = (vae.decode(crops).sample + 1) / 2
            if use_gan:
                adversarial = -discriminator(reconstruction).mean()
                if decoded_generated is not None:
                    adversarial = (adversarial - discriminator(decoded_generated).mean()) / 2
                gan_weight = config.adversarial_weight
                if config.adversarial_adaptive:
                    last_layer = accelerator.unwrap_model(vae).decoder.conv_out.weight
                    gan_weight *= adaptive_adversarial_weight(loss, adversarial, last_layer)
                loss = loss + gan_weight * adversarial
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_([p for p in vae.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            if ema is not None:
                ema.update(decoder_part(accelerator.unwrap_model(vae)), step)
            disc_loss = torch.zeros(())
            if train_discriminator:
                real_logits = discriminator(images)
                fake_loss = F.relu(1 + discriminator(reconstruction.detach())).mean()
                if decoded_generated is not None:
                    fake_loss = (fake_loss + F.relu(1 + discriminator(decoded_generated.detach())).mean()) / 2
                disc_loss = F.relu(1 - real_logits).mean() + fake_loss
                disc_optimizer.zero_grad(set_to_none=True)
                accelerator.backward(disc_loss)
                disc_optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(l1=f"{l1.item():.4f}", perc=f"{perceptual.item():.4f}")
            if step % config.log_every == 0:
                run.log_metrics(
                    step,
                    l1=l1.item(),
                    perceptual=perceptual.item(),
                    color=color.item(),
                    kl=kl.item(),
                    equivariance=equivariance.item(),
                    adversarial=adversarial.item(),
                    adversarial_weight=gan_weight,
                    discriminator=disc_loss.item(),
                )
            if step % config.validate_every == 0 or step == config.max_steps:
                _validate(accelerator.unwrap_model(vae), val_images, run, step, generated_preview)
            if step % config.checkpoint_every == 0 or step == config.max_steps:
                saved = {"vae": accelerator.unwrap_model(vae), "discriminator": accelerator.unwrap_model(discriminator)}
                if ema is not None:
                    saved["decoder-ema"] = ema.model
                run.checkpoint(step, saved, {"optimizer": optimizer, "discriminator-optimizer": disc_optimizer})
    bar.close()
    final = accelerator.unwrap_model(vae)
    if ema is not None:
        decoder_part(final).load_state_dict(ema.model.state_dict())
    if config.train_encoder:  # a frozen encoder keeps its latents, so its scaling factor stays valid
        augment.seed(step_seed(config.seed, SCALING))
        final.register_to_config(scaling_factor=latent_scaling_factor(final, train_data))
    # A correction from init_from belongs to the old decoder: refit it or drop it.
    correction = _fit_correction(final, config, progress) if config.colour_correction_size else None
    save_autoencoder(final, run.dir / "autoencoder", correction)
    return run.dir / "autoencoder"


def decoder_part(vae) -> nn.ModuleDict:
    """The modules that decode (the ones ``decoder_ema`` averages), as one module sharing their weights."""
    return nn.ModuleDict({"post_quant_conv": vae.post_quant_conv, "decoder": vae.decoder})


def generated_latents(config: AutoencoderTrainConfig, vae, path: Path, progress: bool = True) -> torch.Tensor:
    """Scaled latents that ``config.generated_latents_from`` samples for evenly spaced training layouts (centre
    crops of ``generated_latents_size``), cached at ``path`` (.safetensors, with a .json of the settings that
    made them: a changed model or setting samples them again)."""
    source = config.generated_latents_from
    pipeline, model_sha = latent_space_pipeline(source, vae)
    settings = cache_settings(
        pipeline, model_sha, config, config.generated_latents_count, config.generated_latents_size
    )
    cached = read_cached_latents(path, settings)
    if cached is not None:
        return cached
    tiles, indices = spaced_training_tiles(config, config.generated_latents_count, config.generated_latents_size)
    batch_size = 8
    latents = []
    for start in tqdm(range(0, len(indices), batch_size), disable=not progress, desc="sampling latents"):
        samples = [tiles[i] for i in indices[start : start + batch_size]]
        output = pipeline(
            [s["caption"] for s in samples],
            layout=torch.stack([s["layout"] for s in samples]),
            num_inference_steps=DECODER_DATA_STEPS,
            seed=config.seed + start,
            output_type="latent",
        )
        latents.append(output.images)
    return write_cached_latents(path, settings, torch.cat(latents))


def spaced_training_tiles(config: AutoencoderTrainConfig, count: int, size: int):
    """(the training tiles of ``config.paired_roots``, centre-cropped to ``size``; ``count`` evenly spaced
    indices into them)."""
    crop = CenterCrop(size)
    tiles = torch.utils.data.ConcatDataset([open_split(PairedTiles, r, "train", crop) for r in config.paired_roots])
    indices = list(range(0, len(tiles), max(1, len(tiles) // count)))
    return tiles, indices[:count]


def cache_settings(pipeline, model_sha: str, config: AutoencoderTrainConfig, count: int, size: int) -> dict:
    """What makes a cache of sampled latents: a change to any of these samples them again."""
    return {
        "model_sha256": model_sha,
        "count": count,
        "size": size,
        "seed": config.seed,
        "steps": DECODER_DATA_STEPS,
        "guidance_scale": pipeline.default_guidance_scale,
    }


def read_cached_latents(path: Path, settings: dict) -> torch.Tensor | None:
    """The latents cached at ``path`` (.safetensors beside a .json of the settings that made them), or None when
    there are none or other settings made them."""
    meta_path, tensor_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if meta_path.is_file() and tensor_path.is_file() and read_json(meta_path) == settings:
        return load_file(tensor_path)["latents"]
    return None


def write_cached_latents(path: Path, settings: dict, latents: torch.Tensor) -> torch.Tensor:
    latents = latents.float().contiguous()
    with atomic_path(path.with_suffix(".safetensors")) as tmp:
        save_file({"latents": latents}, str(tmp))
    write_json_atomic(path.with_suffix(".json"), settings)  # written last: it marks the cache complete
    return latents


def latent_space_pipeline(source: str, vae):
    """The embedded model at ``source`` and its fingerprint; InputError unless its denoiser works in ``vae``'s
    latent space."""
    from ..generate.api import load_pipeline
    from ..generate.pipeline import LayoutToImagePipeline

    pipeline, _, model_sha = load_pipeline(source)
    if not isinstance(pipeline, LayoutToImagePipeline):
        raise InputError(source, "not an embedded diffusion model", "give a model folder made by terrasynth train")
    model = pipeline.model
    if model.vae is None or not shares_latent_space(model.vae, vae):
        raise InputError(
            source,
            "its denoiser does not work in this autoencoder's latent space",
            "give the model whose autoencoder init_from is",
        )
    return pipeline, model_sha


def denoised_pairs(config: AutoencoderTrainConfig, vae, path: Path, progress: bool = True):
    """(scaled latents, images in [0, 1]) for ``config.denoised_pairs_count`` evenly spaced training tiles: each
    tile's latent redrawn by the last 1 to ``denoised_pairs_max_steps`` steps of ``config.denoised_pairs_from``'s
    default sampler (SDEdit). The latents are cached at ``path`` like :func:`generated_latents`; the images are
    read again from the tiles."""
    pipeline, model_sha = latent_space_pipeline(config.denoised_pairs_from, vae)
    tiles, indices = spaced_training_tiles(config, config.denoised_pairs_count, config.denoised_pairs_size)
    samples = [tiles[i] for i in indices]
    images = torch.stack([s["image"] for s in samples])
    settings = cache_settings(pipeline, model_sha, config, config.denoised_pairs_count, config.denoised_pairs_size)
    settings["max_steps"] = config.denoised_pairs_max_steps
    cached = read_cached_latents(path, settings)
    if cached is not None:
        return cached, images
    rng = torch.Generator().manual_seed(config.seed)
    steps_per_tile = torch.randint(1, config.denoised_pairs_max_steps + 1, (len(samples),), generator=rng).tolist()
    latents = [None] * len(samples)
    batch_size = 8
    bar = tqdm(total=len(samples), disable=not progress, desc="denoising latents")
    for steps_run in sorted(set(steps_per_tile)):
        group = [i for i, k in enumerate(steps_per_tile) if k == steps_run]
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            with torch.no_grad():
                encoded = pipeline.model.encode_images(images[chunk])
            output = pipeline(
                [samples[i]["caption"] for i in chunk],
                layout=torch.stack([samples[i]["layout"] for i in chunk]),
                num_inference_steps=DECODER_DATA_STEPS,
                seed=config.seed + chunk[0],
                output_type="latent",
                init_latents=encoded,
                strength=steps_run / DECODER_DATA_STEPS,
            )
            for i, latent in zip(chunk, output.images):
                latents[i] = latent
            bar.update(len(chunk))
    bar.close()
    return write_cached_latents(path, settings, torch.stack(latents)), images


def random_pair_crops(latents, images, count: int, size: int, factor: int, generator: torch.Generator):
    """``count`` aligned windows: size×size of randomly chosen latents and the (size·factor)² pixels they cover."""
    windows = random_windows(latents, count, size, generator)
    latent_crops = torch.stack([latents[i, :, t : t + size, x : x + size] for i, t, x in windows])
    pixel = size * factor
    top_left = [(i, t * factor, x * factor) for i, t, x in windows]
    image_crops = torch.stack([images[i, :, t : t + pixel, x : x + pixel] for i, t, x in top_left])
    return latent_crops, image_crops


def shares_latent_space(vae, other) -> bool:
    """True when both autoencoders encode alike (same encoder weights and scaling factor), so latents made for
    one (a diffusion model's) fit the other's decoder."""
    mine, theirs = vae.state_dict(), other.state_dict()
    frozen = {k for k in mine if k.startswith(("encoder.", "quant_conv."))}
    same_keys = frozen == {k for k in theirs if k.startswith(("encoder.", "quant_conv."))}
    same_encoder = same_keys and all(torch.equal(mine[k].float(), theirs[k].float()) for k in frozen)
    return same_encoder and vae.config.scaling_factor == other.config.scaling_factor


def random_windows(latents: torch.Tensor, count: int, size: int, generator: torch.Generator):
    """``count`` (latent index, top, left) of size×size windows of randomly chosen latents, at random places."""
    height, width = latents.shape[-2:]
    picks = torch.randint(len(latents), (count,), generator=generator).tolist()
    tops = torch.randint(height - size + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(width - size + 1, (count,), generator=generator).tolist()
    return list(zip(picks, tops, lefts))


def random_latent_crops(latents: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` size×size windows of randomly chosen latents, at random places."""
    windows = random_windows(latents, count, size, generator)
    return torch.stack([latents[i, :, t : t + size, x : x + size] for i, t, x in windows])


def _fit_correction(vae, config: AutoencoderTrainConfig, progress: bool, count: int = 512, batch_size: int = 16):
    data = image_dataset(config.paired_roots, config.scene_roots, "train", config.colour_correction_size, augment=False)
    indices = list(range(0, len(data), max(1, len(data) // count)))[:count]
    batches = (
        torch.stack([data[i]["image"] for i in indices[start : start + batch_size]])
        for start in range(0, len(indices), batch_size)
    )
    vae.eval()
    options = {"seed": config.seed, "progress": progress} if config.colour_correction == "local" else {}
    return fit_colour_correction(vae, batches, config.colour_correction, **options)


def load_initial_autoencoder(config: AutoencoderTrainConfig):
    """The autoencoder in ``config.init_from``, checked against the config's architecture; a config with a
    deeper decoder grows it (``grow_decoder``: same output, new layers to train)."""
    vae = load_autoencoder(config.init_from)
    depth = config.autoencoder.decoder_layers_per_block
    if depth is not None and depth > decoder_depth(vae):
        grow_decoder(vae, depth)
    built = config.autoencoder.build()
    if {k: v.shape for k, v in vae.state_dict().items()} != {k: v.shape for k, v in built.state_dict().items()}:
        raise InputError(
            config.init_from, "its architecture differs from the config's autoencoder", "match the config to it"
        )
    return vae


@torch.no_grad()
def _validate(vae, images: torch.Tensor, run: TrainingRun, step: int, generated=None) -> None:
    vae.eval()
    latents = vae.encode(images.to(vae.device) * 2 - 1).latent_dist.mode()
    reconstruction = ((vae.decode(latents).sample + 1) / 2).clamp(0, 1)
    if generated is not None:
        decoded = ((vae.decode(generated.to(vae.device)).sample + 1) / 2).clamp(0, 1).cpu()
        write_png(run.dir / "validation" / f"generated-step-{step:06d}.png", image_grid(list(decoded), len(decoded)))
    vae.train()
    mse = (reconstruction.cpu() - images).pow(2).mean((1, 2, 3)).clamp(min=1e-10)
    psnr = float((10 * torch.log10(1 / mse)).mean())
    run.log_metrics(step, val_psnr=psnr, latent_roughness=latent_roughness(latents))
    write_png(
        run.dir / "validation" / f"step-{step:06d}.png",
        image_grid(list(images) + list(reconstruction.cpu()), columns=len(images)),
    )


@torch.no_grad()
def latent_scaling_factor(vae, dataset, count: int = 256) -> float:
    """1 / std of latents, so the diffusion model sees unit-variance inputs (the SD convention)."""
    vae.eval()
    indices = list(range(0, len(dataset), max(1, len(dataset) // count)))[:count]
    latents = []
    for start in range(0, len(indices), 16):
        batch = torch.stack([dataset[i]["image"] for i in indices[start : start + 16]]).to(vae.device)
        latents.append(vae.encode(batch * 2 - 1).latent_dist.mode().cpu())
    return float(1.0 / torch.cat(latents).std())
