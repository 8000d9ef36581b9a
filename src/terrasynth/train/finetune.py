"""Fine-tune Stable Diffusion the paper's ways: full text-to-image, DreamBooth, Textual Inversion, LoRA, ControlNet.

One config and one training loop; what differs by method is kept to three small pieces:

- which parameters train: the UNet (text2img, DreamBooth; optionally the text encoder), LoRA adapters on the UNet's
  attention projections (Hu et al. 2021, via ``peft``), the new token's embedding rows (Gal et al. 2022), or a
  ControlNet made from the UNet (Zhang et al. 2023) fed the layout at pixel scale;
- the loss: the denoising MSE of Ho et al. 2020 (ε or v target, as the base's scheduler says), plus DreamBooth's
  prior-preservation term on images the base made of the class prompt (Ruiz et al. 2023);
- what is saved: a whole ``StableDiffusionPipeline`` / ``StableDiffusionControlNetPipeline`` folder, the LoRA
  weights ``save_lora_weights`` writes, or ``learned_embeds.safetensors`` for ``load_textual_inversion``.

The loop runs on ``accelerate`` (``accelerate launch -m terrasynth.cli finetune ...`` spreads it over GPUs and
machines) with mixed precision, gradient accumulation and gradient checkpointing as flags. Every random choice
of a step (images, crops, flips, noise, timesteps) comes from (seed, step, micro-batch, process), so
``--resume latest`` repeats exactly what an uninterrupted run would. Checkpoints hold only the trainable tensors
(safetensors, rotated), so a LoRA checkpoint is megabytes, not the whole UNet.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.captions import SCENE_TEMPLATES, add_metadata_words, caption_from_layout
from ..data.grids import image_grid, write_png
from ..data.images import is_image_file, list_images, read_image
from ..data.paired_tiles import PairedTiles
from ..data.scene_folder import SceneFolder
from ..data.transforms import crop, dihedral
from ..errors import InputError, TerrasynthError
from ..files import follow_umask, write_json_atomic
from ..models.stable_diffusion import (
    FINETUNE_INFO,
    LORA_WEIGHTS,
    TEXTUAL_INVERSION_WEIGHTS,
    StableDiffusionComponents,
    controlnet_embedding_channels,
    encode_layout,
    load_stable_diffusion,
    quiet_loading,
)
from .run import TrainingRun, learning_rate_at, step_generator, step_seed

log = logging.getLogger(__name__)

METHODS = ("text2img", "dreambooth", "textual-inversion", "lora", "controlnet")
# Learning rates the diffusers example scripts use for each method.
DEFAULT_LEARNING_RATES = {
    "text2img": 1e-5,
    "dreambooth": 5e-6,
    "textual-inversion": 5e-4,
    "lora": 1e-4,
    "controlnet": 1e-5,
}
# Random draws of a step, one stream each (see ``step_generator``).
_BATCH, _CROPS, _VALIDATION = 0, 1, 2


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run needs; JSON round trip via :mod:`terrasynth.config`."""

    method: str = "lora"
    base: str = ""  # a diffusers Stable Diffusion folder or hub id
    data: tuple[str, ...] = ()  # paired-tile roots, scene folders, or plain image folders
    output_dir: str = "runs/finetune"
    split: str = "train"  # of paired/scene data; a set too small to have one trains on all of it
    # Captions: the data's own (layout shares / scene class) unless ``prompt`` is given; ``metadata`` words
    # (season, time_of_day, place, gsd_m) are appended to every caption, as the paper varies its prompts.
    prompt: str | None = None
    metadata: dict | None = None
    # DreamBooth: ``prompt`` is the instance prompt ("aerial image of sks site").
    prior_preservation: bool = True
    class_prompt: str = "aerial image"
    class_data: str | None = None  # folder of class images; default: made by the base model in the run folder
    num_class_images: int = 100
    class_image_steps: int = 30
    prior_loss_weight: float = 1.0
    train_text_encoder: bool = False  # text2img and DreamBooth
    # Textual Inversion: ``prompt`` may hold ``{token}``; default prompts are the scene templates of the token.
    placeholder_token: str = "<site>"
    initializer_token: str = "site"
    num_vectors: int = 1
    # LoRA
    lora_rank: int = 4
    lora_alpha: float | None = None  # default: the rank (scale 1)
    # ControlNet
    layout_encoding: str = "color"  # "color": ClassTable.render display colours; "onehot": one channel per class
    controlnet_init: str | None = None  # start from this ControlNet (folder/hub id) instead of the UNet's copy
    # Images
    resolution: int | None = None  # default: the base's (512 for SD 1.5)
    center_crop: bool = False  # else a random crop
    augment: bool = True  # random flips and quarter turns (aerial images have no up)
    # Optimisation
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = None  # default: DEFAULT_LEARNING_RATES[method]
    warmup_steps: int = 0
    max_steps: int = 1000
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # "no", "fp16", "bf16"
    gradient_checkpointing: bool = False
    seed: int = 0
    # Run folder
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    validate_every: int = 0  # 0: never (the final model is still saved)
    validation_prompts: tuple[str, ...] = ()  # default: captions of the first data samples
    validation_images: int = 2
    validation_steps: int = 25
    validation_guidance: float = 7.5

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.base:
            raise ValueError("give a base model (a diffusers folder or hub id)")
        if not self.data:
            raise ValueError("give at least one data folder")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.layout_encoding not in ("color", "onehot"):
            raise ValueError(f"layout_encoding must be color or onehot, got {self.layout_encoding!r}")
        if self.split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {self.split!r}")
        counts = (self.batch_size, self.gradient_accumulation_steps, self.checkpoint_every, self.log_every)
        if min(counts) < 1 or self.max_steps < 0 or self.validate_every < 0:
            raise ValueError("batch sizes, step counts and intervals must be positive")
        if self.resolution is not None and self.resolution < 8:
            raise ValueError("resolution must be at least 8 pixels")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if self.method == "dreambooth" and not self.prompt:
            raise ValueError("DreamBooth needs an instance prompt naming the subject, e.g. 'aerial image of sks site'")
        if self.method == "textual-inversion":
            if not self.placeholder_token or " " in self.placeholder_token:
                raise ValueError("placeholder_token must be one word, e.g. '<site>'")
            if self.prompt and "{token}" not in self.prompt and self.placeholder_token not in self.prompt:
                raise ValueError("a textual-inversion prompt must contain {token} or the placeholder token")
            if self.num_vectors < 1:
                raise ValueError("num_vectors must be at least 1")
        if self.method == "lora" and self.lora_rank < 1:
            raise ValueError("lora_rank must be at least 1")
        if self.method == "dreambooth" and self.prior_preservation and self.num_class_images < 1:
            raise ValueError("prior preservation needs num_class_images ≥ 1")

    @property
    def lr(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.method]

    def caption_prompt(self) -> str | None:
        """The fixed prompt of every training image, with the placeholder token filled in, or None."""
        if self.prompt is None:
            return None
        return self.prompt.replace("{token}", self.placeholder_token)


# Data ---------------------------------------------------------------------------------------------------------


class ImageFolder(torch.utils.data.Dataset):
    """Images directly in a folder (a DreamBooth subject, class images). Samples: ``{"image", "caption", "id"}``."""

    def __init__(self, root: str | Path, caption: str = "aerial image", metadata: dict | None = None):
        self.root = Path(root)
        self.files = list_images(self.root)
        self.caption = add_metadata_words(caption, metadata)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        return {"image": read_image(self.files[index]), "caption": self.caption, "id": self.files[index].stem}


def open_dataset(root: str | Path, split: str, metadata: dict | None):
    """A paired-tile root (``images/`` + ``masks/``), a scene folder (one sub-folder per class) or a plain image
    folder, by what ``root`` holds."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "data folder not found")

    def with_split(kind, **kwargs):
        try:
            return kind(root, split, **kwargs)
        except InputError as error:
            if "is empty" not in str(error) or split == "all":
                raise
            log.warning("%s has no %r split (too few images): training on all of it", root, split)
            return kind(root, "all", **kwargs)

    if (root / "images").is_dir() and (root / "masks").is_dir():
        return with_split(PairedTiles, metadata=metadata)
    if any(is_image_file(p) for p in root.iterdir()):
        return ImageFolder(root, metadata=metadata)
    if any(p.is_dir() for p in root.iterdir()):
        return with_split(SceneFolder, caption_templates=SCENE_TEMPLATES, metadata=metadata)
    raise InputError(root, "no images found", "give paired tiles (images/, masks/), class folders, or images")


def _resize_short_side(sample: dict, size: int) -> dict:
    """Scale image (bilinear, antialiased) and layout (nearest) so the shorter side is ``size``."""
    height, width = sample["image"].shape[-2:]
    scale = size / min(height, width)
    new = (max(size, round(height * scale)), max(size, round(width * scale)))
    if new == (height, width):
        return sample
    out = dict(sample)
    out["image"] = F.interpolate(sample["image"][None], new, mode="bilinear", antialias=True)[0].clamp(0, 1)
    if "layout" in sample:
        out["layout"] = F.interpolate(sample["layout"][None, None].float(), new, mode="nearest")[0, 0].long()
    return out


class FinetuneData:
    """The training images of every data folder, drawn by index with per-step randomness."""

    def __init__(self, config: FinetuneConfig, resolution: int, needs_layouts: bool):
        self.config = config
        self.resolution = resolution
        self.datasets = [open_dataset(root, config.split, config.metadata) for root in config.data]
        self.index = [(d, i) for d in self.datasets for i in range(len(d))]
        if not self.index:
            raise InputError(config.data[0], "no training images found")
        tables = [d.class_table for d in self.datasets if isinstance(d, PairedTiles)]
        self.class_table = tables[0] if tables else None
        if needs_layouts:
            if len(tables) != len(self.datasets):
                bad = next(d.root for d in self.datasets if not isinstance(d, PairedTiles))
                raise InputError(bad, "ControlNet needs paired tiles (images/ and masks/)", "pass paired data only")
            if any(t.names != self.class_table.names for t in tables):
                raise InputError(self.datasets[1].root, "paired data sets have different class tables")

    def __len__(self) -> int:
        return len(self.index)

    def example(self, position: int, rng: random.Random) -> dict:
        dataset, index = self.index[position]
        sample = _resize_short_side(dataset[index], self.resolution)
        height, width = sample["image"].shape[-2:]
        size = self.resolution
        if self.config.center_crop:
            top, left = (height - size) // 2, (width - size) // 2
        else:
            top, left = rng.randint(0, height - size), rng.randint(0, width - size)
        sample = crop(sample, top, left, size, size)
        if self.config.augment:
            sample = dihedral(sample, rng.randint(0, 3), rng.random() < 0.5)
        prompt = self.config.caption_prompt()
        if prompt is not None:
            caption = add_metadata_words(prompt, self.config.metadata)
        elif self.config.method == "textual-inversion":
            template = SCENE_TEMPLATES[rng.randrange(len(SCENE_TEMPLATES))]
            caption = add_metadata_words(template.format(self.config.placeholder_token), self.config.metadata)
        elif isinstance(dataset, PairedTiles):  # the shares of the crop, not of the whole tile
            caption = caption_from_layout(sample["layout"], dataset.class_table, self.config.metadata)
        else:
            caption = sample["caption"]
        return {"image": sample["image"], "caption": caption, "layout": sample.get("layout")}

    def batch(self, size: int, generator: torch.Generator, rng: random.Random) -> dict:
        positions = torch.randint(0, len(self), (size,), generator=generator).tolist()
        examples = [self.example(p, rng) for p in positions]
        batch = {
            "pixels": torch.stack([e["image"] for e in examples]) * 2 - 1,
            "captions": [e["caption"] for e in examples],
        }
        if all(e["layout"] is not None for e in examples):
            batch["layouts"] = torch.stack([e["layout"] for e in examples])
        return batch


def prepare_class_images(
    components: StableDiffusionComponents,
    config: FinetuneConfig,
    run_dir: Path,
    resolution: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Path:
    """DreamBooth's prior-preservation images: ``class_data`` if given, else ``num_class_images`` made by the base
    model from ``class_prompt`` in ``run_dir/class-images`` (kept, so a resumed run reuses them)."""
    if config.class_data:
        folder = Path(config.class_data)
        list_images(folder)  # raises naming the folder when it is missing or empty
        return folder
    folder = run_dir / "class-images"
    have = sum(1 for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else 0
    missing = range(have, config.num_class_images)
    if not missing:
        return folder
    from diffusers import StableDiffusionPipeline

    log.info("making %d class images of %r with the base model", len(missing), config.class_prompt)
    pipe = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=_sampler(components),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for index in tqdm(missing, disable=not progress, desc="class images"):
        with torch.no_grad():
            image = pipe(
                config.class_prompt,
                height=resolution,
                width=resolution,
                num_inference_steps=config.class_image_steps,
                generator=torch.Generator().manual_seed(config.seed * 100_003 + index),
                output_type="np",
            ).images[0]
        write_png(folder / f"class-{index:05d}.png", (image * 255).round().astype("uint8"))
    return folder


# Method pieces: which parameters train, and what is saved -----------------------------------------------------


class TrainableParameters:
    """The trainable parameters of ``module`` as a checkpointable state dict (adapters, token rows, or all)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.module.named_parameters())
        expected = set(self.state_dict())
        if set(state) != expected:
            raise InputError(None, f"checkpoint does not match this run's trainable parameters ({len(state)} saved)")
        for name, value in state.items():
            params[name].copy_(value.to(params[name].dtype))


@dataclass
class MethodSetup:
    """What one method trains: the modules accelerate prepares, their parameters, and a hook after each step."""

    trained: dict[str, torch.nn.Module]  # name → module with trainable parameters (prepared by accelerate)
    parameters: list[torch.nn.Parameter]
    after_step: Callable[[], None] | None = None  # run after each optimizer step
    token_ids: list[int] = field(default_factory=list)  # textual inversion: the new tokens' ids
    tokens: list[str] = field(default_factory=list)


def setup_method(components: StableDiffusionComponents, config: FinetuneConfig, conditioning_channels: int):
    c = components
    for module in (c.vae, c.text_encoder, c.unet):
        module.requires_grad_(False)
    if config.method in ("text2img", "dreambooth"):
        c.unet.requires_grad_(True).train()
        trained = {"unet": c.unet}
        if config.train_text_encoder:
            c.text_encoder.requires_grad_(True).train()
            trained["text_encoder"] = c.text_encoder
        return MethodSetup(trained, [p for m in trained.values() for p in m.parameters()])
    if config.method == "lora":
        from peft import LoraConfig

        c.unet.add_adapter(
            LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha or config.lora_rank,
                init_lora_weights="gaussian",
                target_modules=["to_k", "to_q", "to_v", "to_out.0"],
            )
        )
        return MethodSetup({"unet": c.unet}, [p for p in c.unet.parameters() if p.requires_grad])
    if config.method == "controlnet":
        if c.controlnet is None:
            from diffusers import ControlNetModel

            c.controlnet = ControlNetModel.from_unet(
                c.unet,
                conditioning_channels=conditioning_channels,
                conditioning_embedding_out_channels=controlnet_embedding_channels(c.vae_scale_factor),
            )
        elif c.controlnet.config.conditioning_channels != conditioning_channels:
            raise InputError(
                config.controlnet_init or c.path,
                f"the ControlNet takes {c.controlnet.config.conditioning_channels} conditioning channels, "
                f"the {config.layout_encoding} layout has {conditioning_channels}",
                "choose the matching --layout-encoding",
            )
        c.controlnet.requires_grad_(True).train()
        return MethodSetup({"controlnet": c.controlnet}, list(c.controlnet.parameters()))
    return _setup_textual_inversion(c, config)


def _setup_textual_inversion(c: StableDiffusionComponents, config: FinetuneConfig) -> MethodSetup:
    """Add the placeholder token(s), start their embedding from ``initializer_token``, train only those rows."""
    tokens = [config.placeholder_token] + [f"{config.placeholder_token}_{i}" for i in range(1, config.num_vectors)]
    added = c.tokenizer.add_tokens(tokens)
    if added != len(tokens):
        raise InputError(
            None, f"the tokenizer already has the token {config.placeholder_token!r}", "choose another --token"
        )
    initializer = c.tokenizer.encode(config.initializer_token, add_special_tokens=False)
    if len(initializer) != 1:
        raise InputError(
            None,
            f"the initializer {config.initializer_token!r} is {len(initializer)} tokens",
            "choose a word the tokenizer keeps whole",
        )
    token_ids = c.tokenizer.convert_tokens_to_ids(tokens)
    c.text_encoder.resize_token_embeddings(len(c.tokenizer), mean_resizing=False)
    embeddings = c.text_encoder.get_input_embeddings()
    with torch.no_grad():
        embeddings.weight[token_ids] = embeddings.weight[initializer[0]].clone()
    kept = torch.ones(len(c.tokenizer), dtype=torch.bool)
    kept[token_ids] = False
    original = {"rows": embeddings.weight.detach()[kept].clone(), "kept": kept}
    embeddings.weight.requires_grad_(True)
    c.text_encoder.train()

    @torch.no_grad()
    def restore_other_rows():  # weight decay and Adam moments must not move the tokens we keep
        weight = embeddings.weight
        if original["rows"].device != weight.device:  # moved once, after accelerate placed the model
            original.update(rows=original["rows"].to(weight.device), kept=original["kept"].to(weight.device))
        weight[original["kept"]] = original["rows"].to(weight.dtype)

    return MethodSetup({"text_encoder": c.text_encoder}, [embeddings.weight], restore_other_rows, token_ids, tokens)


def _sampler(components: StableDiffusionComponents):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(components.noise_scheduler.config)


def _pipeline(components: StableDiffusionComponents):
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline

    parts = {
        "vae": components.vae,
        "text_encoder": components.text_encoder,
        "tokenizer": components.tokenizer,
        "unet": components.unet,
        "scheduler": _sampler(components),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    if components.controlnet is not None:
        return StableDiffusionControlNetPipeline(controlnet=components.controlnet, **parts)
    return StableDiffusionPipeline(**parts)


def save_finetuned(
    components: StableDiffusionComponents,
    config: FinetuneConfig,
    setup: MethodSetup,
    directory: Path,
    info: dict,
) -> Path:
    """Write the result in diffusers format, built beside ``directory`` and renamed onto it."""
    staging = directory.with_name(f".{directory.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    with quiet_loading():
        _write_weights(components, config, setup, staging)
    if info.get("class_table"):
        write_json_atomic(staging / "classes.json", info["class_table"])
    write_json_atomic(staging / FINETUNE_INFO, info)
    follow_umask(staging)  # diffusers writes its weights owner-only (0600)
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)
    return directory


def _write_weights(c: StableDiffusionComponents, config: FinetuneConfig, setup: MethodSetup, staging: Path) -> None:
    from safetensors.torch import save_file

    if config.method == "lora":
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(c.unet))
        layers = {k: v.detach().float().contiguous().cpu() for k, v in layers.items()}
        StableDiffusionPipeline.save_lora_weights(
            staging, unet_lora_layers=layers, weight_name=LORA_WEIGHTS, safe_serialization=True
        )
    elif config.method == "textual-inversion":
        staging.mkdir(parents=True)
        vectors = c.text_encoder.get_input_embeddings().weight[setup.token_ids].detach().float().cpu()
        save_file({config.placeholder_token: vectors.contiguous()}, staging / TEXTUAL_INVERSION_WEIGHTS)
    else:
        _pipeline(c).save_pretrained(staging, safe_serialization=True)


# The loop -----------------------------------------------------------------------------------------------------


def _base_record(config: FinetuneConfig) -> str:
    """The base as a later run can find it: an absolute folder, or the hub id as given."""
    path = Path(config.base).expanduser()
    return str(path.resolve()) if path.exists() else config.base


def finetune(config: FinetuneConfig, resume: str | None = None, progress: bool = True) -> Path:
    """Fine-tune and return the saved model folder (``output_dir/model``)."""
    from accelerate import Accelerator

    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise InputError(None, "--mixed-precision fp16 needs a GPU", "use bf16 or no on a CPU")
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation_steps
    )
    components = load_stable_diffusion(config.base, config.controlnet_init if config.method == "controlnet" else None)
    if config.method != "controlnet":
        components.controlnet = None
    resolution = config.resolution or components.resolution
    if resolution % components.vae_scale_factor:
        raise InputError(None, f"--resolution must be a multiple of {components.vae_scale_factor}, got {resolution}")
    data = FinetuneData(config, resolution, needs_layouts=config.method == "controlnet")
    class_table = data.class_table if config.method == "controlnet" else None
    channels = (len(class_table) if config.layout_encoding == "onehot" else 3) if class_table else 3
    run = TrainingRun(config.output_dir, config, config.keep_checkpoints)
    torch.manual_seed(config.seed)  # new weights (LoRA adapters) start the same in every run of this config
    setup = setup_method(components, config, channels)
    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision, torch.float32)
    for name in ("vae", "text_encoder", "unet"):  # frozen parts run in the mixed-precision dtype
        if name not in setup.trained:
            getattr(components, name).to(device)
            if weight_dtype != torch.float32:
                getattr(components, name).to(dtype=weight_dtype)
    if config.method == "lora" and weight_dtype != torch.float32:  # frozen base weights low, adapters float32
        for param in components.unet.parameters():
            param.data = param.data.to(torch.float32 if param.requires_grad else weight_dtype)
    if config.gradient_checkpointing:
        components.unet.enable_gradient_checkpointing()
        if components.controlnet is not None:
            components.controlnet.enable_gradient_checkpointing()
        if "text_encoder" in setup.trained:
            components.text_encoder.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(setup.parameters, lr=config.lr, weight_decay=1e-2)
    saved = {name: TrainableParameters(module) for name, module in setup.trained.items()}
    step = run.resume(resume, saved, optimizer)
    running = run.resumed_state.get("running_loss")
    class_data = None
    if config.method == "dreambooth" and config.prior_preservation:
        with accelerator.autocast():
            folder = prepare_class_images(components, config, run.dir, resolution, device, progress and step == 0)
        class_config = dataclasses.replace(config, data=(str(folder),), prompt=config.class_prompt, metadata=None)
        class_data = FinetuneData(class_config, resolution, needs_layouts=False)
    validation = _validation_inputs(data, config, class_table)
    names = list(setup.trained)
    prepared = accelerator.prepare(*setup.trained.values(), optimizer)
    net = dict(zip(names, prepared[:-1]))
    optimizer = prepared[-1]
    info = {
        "method": config.method,
        "base": _base_record(config),
        "resolution": resolution,
        "placeholder_token": config.placeholder_token if config.method == "textual-inversion" else None,
        "tokens": setup.tokens,
        "layout_encoding": config.layout_encoding if class_table else None,
        "class_table": class_table.to_dict() if class_table else None,
        "prompt": config.caption_prompt(),
        "metadata": config.metadata,
    }

    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc=f"finetune {config.method}")
    window_start, window_steps = time.perf_counter(), 0
    while step < config.max_steps:
        lr = learning_rate_at(step, config.lr, config.warmup_steps, config.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(config.gradient_accumulation_steps):
            # Every random choice of this micro-batch comes from (seed, step, micro, process): resumable exactly.
            keys = (step, micro, accelerator.process_index)
            generator = step_generator(config.seed, _BATCH, *keys)
            rng = random.Random(step_seed(config.seed, _CROPS, *keys))
            batch = data.batch(config.batch_size, generator, rng)
            prior = class_data.batch(config.batch_size, generator, rng) if class_data is not None else None
            with accelerator.accumulate(*net.values()):
                with accelerator.autocast():
                    loss = _loss(components, net, config, batch, prior, class_table, generator, device, weight_dtype)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(setup.parameters, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        if setup.after_step is not None:
            setup.after_step()
        step += 1
        window_steps += 1
        value = accelerator.gather(loss.detach()[None]).mean().item()
        if not math.isfinite(value):
            raise TerrasynthError(f"loss is {value} at step {step} (lower --learning-rate, or use bf16 over fp16)")
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if not accelerator.is_main_process:
            continue
        if step % config.log_every == 0 or step == config.max_steps:
            now = time.perf_counter()
            extra = {}
            if torch.cuda.is_available():
                extra["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            run.log_metrics(
                step, loss=running, last_loss=value, lr=lr, step_s=(now - window_start) / window_steps, **extra
            )
            window_start, window_steps = now, 0
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            run.checkpoint(step, saved, optimizer, {"running_loss": running})
        if config.validate_every and (step % config.validate_every == 0 or step == config.max_steps):
            with accelerator.autocast():
                _validate(components, config, validation, run, step, class_table, resolution)
            window_start = time.perf_counter()  # validation time is not step time
    bar.close()
    accelerator.wait_for_everyone()
    out = run.dir / "model"
    if accelerator.is_main_process:
        info["steps"] = step
        components_out = _unwrapped(components, accelerator, net)
        save_finetuned(components_out, config, setup, out, info)
    accelerator.end_training()
    return out


def _unwrapped(components: StableDiffusionComponents, accelerator, net: dict) -> StableDiffusionComponents:
    for name, module in net.items():
        setattr(components, name, accelerator.unwrap_model(module))
    return components


def _loss(c, net, config, batch, prior, class_table, generator, device, weight_dtype) -> torch.Tensor:
    """Denoising MSE (Ho et al. 2020) in the VAE's latent space (Rombach et al. 2022); DreamBooth adds the prior
    term on class images, weighted by ``prior_loss_weight`` (Ruiz et al. 2023, eq. 2)."""
    pixels, captions = batch["pixels"], batch["captions"]
    if prior is not None:
        pixels, captions = torch.cat([pixels, prior["pixels"]]), captions + prior["captions"]
    with torch.no_grad():
        # The CPU generator draws the posterior sample whatever the device (diffusers' randn_tensor).
        latents = c.vae.encode(pixels.to(device, weight_dtype)).latent_dist.sample(generator=generator)
        latents = latents * c.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
    count = latents.shape[0]
    steps = int(c.noise_scheduler.config.num_train_timesteps)
    timesteps = torch.randint(0, steps, (count,), generator=generator).to(device)
    noisy = c.noise_scheduler.add_noise(latents, noise, timesteps)
    ids = c.tokenizer(
        captions, padding="max_length", max_length=c.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
    text_encoder = net.get("text_encoder", c.text_encoder)
    hidden = text_encoder(ids, return_dict=False)[0]
    unet = net.get("unet", c.unet)
    # Inputs go in the dtype of the module that reads them: trained modules are float32, frozen ones (and a LoRA
    # UNet's base weights) are in the mixed-precision dtype; autocast does the rest on GPUs.
    dtype = next(unet.parameters()).dtype
    if "controlnet" in net:
        condition = encode_layout(batch["layouts"], class_table, config.layout_encoding).to(device)
        control_dtype = next(net["controlnet"].parameters()).dtype
        down, mid = net["controlnet"](
            noisy.to(control_dtype),
            timesteps,
            encoder_hidden_states=hidden.to(control_dtype),
            controlnet_cond=condition.to(control_dtype),
            return_dict=False,
        )
        prediction = unet(
            noisy.to(dtype),
            timesteps,
            encoder_hidden_states=hidden.to(dtype),
            down_block_additional_residuals=[d.to(dtype) for d in down],
            mid_block_additional_residual=mid.to(dtype),
            return_dict=False,
        )[0]
    else:
        prediction = unet(noisy.to(dtype), timesteps, encoder_hidden_states=hidden.to(dtype), return_dict=False)[0]
    prediction_type = c.noise_scheduler.config.prediction_type
    target = c.noise_scheduler.get_velocity(latents, noise, timesteps) if prediction_type == "v_prediction" else noise
    if prior is None:
        return F.mse_loss(prediction.float(), target.float())
    instance, prior_prediction = prediction.float().chunk(2)
    instance_target, prior_target = target.float().chunk(2)
    return F.mse_loss(instance, instance_target) + config.prior_loss_weight * F.mse_loss(prior_prediction, prior_target)


# Validation ---------------------------------------------------------------------------------------------------


def _validation_inputs(data: FinetuneData, config: FinetuneConfig, class_table) -> list[dict]:
    """Fixed prompts (and layouts) drawn at every validation: the given prompts, else the first samples'."""
    if not config.validate_every:
        return []
    rng = random.Random(config.seed)
    examples = [data.example(i % len(data), rng) for i in range(config.validation_images)]
    prompts = list(config.validation_prompts) or [e["caption"] for e in examples]
    return [
        {"prompt": prompts[i % len(prompts)], "layout": examples[i]["layout"] if class_table else None}
        for i in range(max(len(prompts), config.validation_images))
    ]


@torch.no_grad()
def _validate(components, config: FinetuneConfig, inputs, run: TrainingRun, step: int, class_table, resolution: int):
    """A grid of images from the current weights (layout beside each for ControlNet) in ``run/validation``."""
    modules = [m for m in (components.vae, components.text_encoder, components.unet, components.controlnet) if m]
    dtypes = [(p, p.dtype) for m in modules for p in m.parameters()]
    if components.vae.device.type == "cpu":  # CPU autocast leaves mixed dtypes to the pipeline: sample in float32
        for param, _ in dtypes:
            param.data = param.data.float()
    try:
        _sample_grid(components, config, inputs, run, step, class_table, resolution)
    finally:
        for param, dtype in dtypes:  # bfloat16 → float32 → back is exact; LoRA adapters stay float32
            param.data = param.data.to(dtype)
    for name in ("unet", "text_encoder", "controlnet"):
        module = getattr(components, name)
        if module is not None and any(p.requires_grad for p in module.parameters()):
            module.train()


def _sample_grid(components, config: FinetuneConfig, inputs, run: TrainingRun, step: int, class_table, resolution):
    pipe = _pipeline(components)
    pipe.set_progress_bar_config(disable=True)
    tiles = []
    for index, item in enumerate(inputs):
        kwargs = {}
        if item["layout"] is not None:
            kwargs["image"] = encode_layout(item["layout"][None], class_table, config.layout_encoding)
            tiles.append(torch.from_numpy(class_table.render(item["layout"])).permute(2, 0, 1) / 255.0)
        image = pipe(
            item["prompt"],
            height=resolution,
            width=resolution,
            num_inference_steps=config.validation_steps,
            guidance_scale=config.validation_guidance,
            generator=step_generator(config.seed, _VALIDATION, index),
            output_type="pt",
            **kwargs,
        ).images[0]
        tiles.append(image.float().cpu())
    columns = 2 * min(len(inputs), 4) if class_table else min(len(inputs), 4)
    write_png(run.dir / "validation" / f"step-{step:06d}.png", image_grid(tiles, columns=max(1, columns)))


__all__ = ["DEFAULT_LEARNING_RATES", "METHODS", "FinetuneConfig", "finetune"]
