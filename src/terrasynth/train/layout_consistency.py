"""Layout-consistency training of the denoiser (after ControlNet++, Li et al. 2024).

At low noise (t below ``max_timestep``) the denoiser's one-step estimate of the clean latent is sharp enough to
segment. A frozen latent segmenter, trained first on the run's cached latents, scores that estimate against the
input layout, and its cross-entropy is added to the diffusion loss: the denoiser is penalised for redrawing
texture that no longer matches the layout, which is where the shipped model loses layout fidelity.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import InputError
from ..files import read_json, write_json_atomic
from ..models.embedded import save_part
from ..models.latent_segmenter import LatentSegmenter, soft_cross_entropy
from .run import step_generator

log = logging.getLogger(__name__)

SEGMENTER_FOLDER = "latent-segmenter"


def layout_given(layouts: torch.Tensor) -> torch.Tensor:
    """Which samples of layout channels (B×(K+1)×h×w, the last channel "layout given") have a layout."""
    return layouts[:, -1].flatten(1).amax(1) > 0


def predicted_clean(
    noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod, prediction_type: str
) -> torch.Tensor:
    """The one-step estimate of the clean latent from the model's prediction."""
    alpha = alphas_cumprod.to(noisy.device)[timesteps].view(-1, 1, 1, 1).to(noisy.dtype)
    signal, noise_level = alpha.sqrt(), (1 - alpha).sqrt()
    if prediction_type == "v_prediction":
        return signal * noisy - noise_level * prediction
    if prediction_type == "epsilon":
        return (noisy - noise_level * prediction) / signal.clamp(min=1e-4)
    return prediction


def degrade(latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur and noise like a one-step clean-latent estimate's, so the segmenter is trained on what it will see."""
    blurred = latents
    for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):
        blurred = F.avg_pool2d(blurred, 3, stride=1, padding=1, count_include_pad=False)
    noise_std = torch.rand(len(latents), 1, 1, 1, generator=generator) * 0.3
    return blurred + noise_std * torch.randn(latents.shape, generator=generator)


def train_latent_segmenter(
    latents: torch.Tensor,
    shares: torch.Tensor,
    steps: int = 400,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[LatentSegmenter, dict]:
    """Fit a segmenter on scaled latents (N×C×h×w) and their layout class shares (N×K×h×w). The last tenth
    (at least one sample) is held out; returns the model and its held-out pixel accuracy and loss."""
    if len(latents) < 2:
        raise ValueError("layout-consistency training needs at least two tiles with layouts")
    held_out = max(1, len(latents) // 10)
    train_latents, train_shares = latents[:-held_out], shares[:-held_out]
    with torch.random.fork_rng():  # a seeded initialisation that leaves the caller's random state alone
        torch.manual_seed(seed)
        segmenter = LatentSegmenter(in_channels=latents.shape[1], num_classes=shares.shape[1])
    optimizer = torch.optim.AdamW(segmenter.parameters(), lr=learning_rate, weight_decay=0.01)
    bar = tqdm(range(steps), disable=not progress, desc="latent segmenter")
    for step in bar:
        generator = step_generator(seed, 7919, step)
        index = torch.randint(0, len(train_latents), (batch_size,), generator=generator)
        batch, target = train_latents[index].float(), train_shares[index].float()
        turns, flip = (
            int(torch.randint(0, 4, (1,), generator=generator)),
            bool(torch.rand(1, generator=generator) < 0.5),
        )
        batch, target = torch.rot90(batch, turns, (-2, -1)), torch.rot90(target, turns, (-2, -1))
        if flip:
            batch, target = batch.flip(-1), target.flip(-1)
        loss = soft_cross_entropy(segmenter(degrade(batch, generator)), target).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine decay to zero
            group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    segmenter.eval().requires_grad_(False)
    with torch.no_grad():
        logits = segmenter(latents[-held_out:].float())
        target = shares[-held_out:].float()
        accuracy = (logits.argmax(1) == target.argmax(1)).float().mean().item()
        held_out_loss = soft_cross_entropy(logits, target).mean().item()
    return segmenter, {"held_out_pixel_accuracy": accuracy, "held_out_loss": held_out_loss, "held_out": held_out}


def load_or_train_segmenter(
    run_dir: Path,
    latents: torch.Tensor,
    layouts: torch.Tensor,
    scaling_factor: float,
    steps: int,
    seed: int,
    progress: bool,
) -> LatentSegmenter:
    """The run's latent segmenter: trained once on the unscaled latents (N×C×h×w) and layout channels of the
    tiles that have a layout, and saved in the run folder, so a resumed run reuses it, even if ``steps`` has
    changed since (with a warning: the steps already trained depend on the saved one)."""
    folder = run_dir / SEGMENTER_FOLDER
    if (folder / "config.json").is_file():
        trained = _trained_steps(folder / "training.json")
        if trained != steps:
            log.warning(
                "%s was trained for %s steps, the config now asks for %d; reusing it (delete the folder to retrain)",
                folder,
                trained,
                steps,
            )
        return LatentSegmenter.from_pretrained(folder).eval().requires_grad_(False)
    with_layout = layout_given(layouts)
    segmenter, scores = train_latent_segmenter(
        latents[with_layout].float() * scaling_factor,
        layouts[with_layout, :-1].float(),
        steps=steps,
        seed=seed,
        progress=progress,
    )
    log.info("latent segmenter: held-out pixel accuracy %.3f", scores["held_out_pixel_accuracy"])
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    save_part(segmenter, partial)
    write_json_atomic(partial / "training.json", {"steps": steps, **scores})
    partial.rename(folder)  # whole or absent: a run killed while saving trains it again
    return segmenter


def _trained_steps(path: Path) -> int | None:
    try:
        return int(read_json(path)["steps"])
    except (InputError, ValueError, KeyError, TypeError):  # unreadable: reported as unknown steps
        return None


def consistency_loss(
    segmenter: LatentSegmenter,
    clean_estimate: torch.Tensor,
    layouts: torch.Tensor,
    timesteps: torch.Tensor,
    max_timestep: int,
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of the segmenter on the estimates of samples with a layout (its "given" channel set)
    and a timestep below ``max_timestep``; zero when there are none. Also returns how many samples counted."""
    eligible = layout_given(layouts) & (timesteps.to(layouts.device) < max_timestep)
    count = int(eligible.sum())
    if count == 0:
        return clean_estimate.sum() * 0.0, 0
    shares = layouts[eligible, :-1]
    return soft_cross_entropy(segmenter(clean_estimate[eligible]), shares).mean(), count
