"""A tiny Stable Diffusion made in code, saved as a plain diffusers folder, for the fine-tuning tests.

    from tests.fake_sd import save_tiny_sd

Components are the smallest diffusers accepts: a two-level 8/16-channel UNet2DConditionModel with
cross-attention width 16, a two-level AutoencoderKL (2× down-sampling), a one-layer CLIPTextModel, and a CLIP
tokenizer whose byte-level vocabulary and merges the test writes itself. Nothing comes from the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Words the tiny BPE merges whole, so common prompt words are one token (the rest fall back to bytes).
WORDS = ("aerial", "image", "satellite", "of", "a", "forest", "site", "in", "winter", "summer", "with", "road")
TINY_RESOLUTION = 32  # pixels; latents are 16×16


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte → printable-unicode table, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tiny_tokenizer_files(directory: str | Path) -> tuple[Path, Path]:
    """``vocab.json`` and ``merges.txt`` of a byte-level CLIP BPE: every byte alone and word-final, merges
    that build :data:`WORDS`, and the start/end tokens."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    vocab: list[str] = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if f"{pieces[0]} {pieces[1]}" not in merges:
                merges.append(f"{pieces[0]} {pieces[1]}")
                vocab.append(merged)
            pieces = [merged] + pieces[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(json.dumps({token: i for i, token in enumerate(dict.fromkeys(vocab))}))
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_path, merges_path


def tiny_tokenizer(directory: str | Path):
    from transformers import CLIPTokenizer

    write_tiny_tokenizer_files(directory)
    return CLIPTokenizer.from_pretrained(directory, model_max_length=16)


def tiny_components(directory: str | Path, seed: int = 0) -> dict:
    """The components of a StableDiffusionPipeline, randomly initialised with ``seed``."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(Path(directory) / "tokenizer-files")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        sample_size=TINY_RESOLUTION // 2,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TINY_RESOLUTION,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def sd15_components(directory: str | Path, seed: int = 0) -> dict:
    """Components with Stable Diffusion 1.5's real shapes (860 M UNet, 84 M VAE, 123 M CLIP ViT-L/14 text
    encoder), randomly initialised: for speed and memory measurements where the public weights cannot be
    fetched. The tokenizer is the tiny one (its ids fit the 49,408-token embedding)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(Path(directory) / "tokenizer-files")
    tokenizer.model_max_length = 77
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def save_tiny_sd(directory: str | Path, seed: int = 0, shapes: str = "tiny") -> Path:
    """A tiny Stable Diffusion folder as ``StableDiffusionPipeline.save_pretrained`` writes it (``shapes="sd15"``:
    Stable Diffusion 1.5's shapes instead, gigabytes)."""
    from diffusers import StableDiffusionPipeline

    directory = Path(directory)
    build = {"tiny": tiny_components, "sd15": sd15_components}[shapes]
    pipe = StableDiffusionPipeline(
        **build(directory.parent / f".{directory.name}-build", seed),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def state_dict_changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)
