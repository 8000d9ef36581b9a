"""Layout- and text-conditioned generation with the embedded model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.classes import ClassTable
from ..data.layouts import class_shares
from ..errors import InputError
from ..models.embedded import EmbeddedDiffusionModel
from .multidiffusion import decode_in_windows, layout_channels_in_strips, predict_in_windows, scene_windows
from .sampling import Generator, Sampling, check_guidance_interval, check_guidance_rescale
from .schedulers import DEFAULT_SCHEDULER, make_scheduler

log = logging.getLogger(__name__)

OUTPUT_TYPES = ("image", "latent")
# Pixels over which an inpainted region fades into the kept image, inward from the mask's edge only.
INPAINT_FEATHER = 8


def prompts_and_seeds(
    prompt: str | list[str], num_images: int, seed: int | list[int] | None
) -> tuple[list[str], list[int]]:
    """The prompt per image (a list sets the image count) and the seed per image, ``seed + i``, or ``seed[i]``
    for a list of seeds: image i is the same whatever the batch size, and its seed (recorded in provenance)
    reproduces it alone. A random ``seed`` when None."""
    prompts = [prompt] * num_images if isinstance(prompt, str) else list(prompt)
    if isinstance(seed, (list, tuple)):
        if len(seed) != len(prompts):
            raise ValueError(f"{len(seed)} seeds for {len(prompts)} images")
        return prompts, [int(s) for s in seed]
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1 - len(prompts), ()).item())
    return prompts, [seed + i for i in range(len(prompts))]


def rescale_guided(guided: torch.Tensor, conditional: torch.Tensor, amount: float) -> torch.Tensor:
    """Lin et al. 2024, section 3.4: ``amount`` of the guided prediction rescaled to the conditional one's
    per-image std, the rest left as it is. The same as diffusers' ``rescale_noise_cfg``, which lives in the
    Stable Diffusion pipeline module: importing that pulls in transformers, seconds of start-up for three lines."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (conditional.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp(min=1e-8))
    return amount * rescaled + (1.0 - amount) * guided


def resolve_guidance_scale(generator: Generator, guidance_scale: float | None) -> float:
    """``guidance_scale``, or the generator's own default (a model's ``guidance_scale``) when it is None."""
    if guidance_scale is None:
        return float(generator.default_guidance_scale)
    return float(guidance_scale)


def resolve_steps(generator: Generator, steps: int | None) -> int:
    """``steps``, or the generator's own default (a model's ``sampling_steps``) when it is None; ValueError
    below 1."""
    if steps is None:
        steps = generator.default_steps
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"num_inference_steps must be a whole number of at least 1, got {steps!r}")
    return int(steps)


def check_per_image(tensor: torch.Tensor, name: str, num_images: int, channels: int, size: tuple[int, int]):
    """``tensor`` (C×H×W, or N×C×H×W with N 1 or ``num_images``; H×W too when ``channels`` is 1) as
    num_images×C×H×W (one is repeated); ValueError naming the shape expected."""
    if tensor.dim() == 2 and channels == 1:
        tensor = tensor[None]
    if tensor.dim() == 3:
        tensor = tensor[None]
    if tensor.dim() != 4 or tuple(tensor.shape[1:]) != (channels, *size):
        raise ValueError(f"{name} must be N×{channels}×{size[0]}×{size[1]}, got {tuple(tensor.shape)}")
    if len(tensor) == 1:
        tensor = tensor.expand(num_images, -1, -1, -1)
    if len(tensor) != num_images:
        plural = name if name.endswith("s") else f"{name}s"
        raise ValueError(f"{len(tensor)} {plural} for {num_images} images")
    return tensor


def feather_inward(redraw: torch.Tensor, width: int = INPAINT_FEATHER) -> torch.Tensor:
    """A soft copy of a binary N×1×H×W mask (1 = redraw) that ramps from 1/``width`` on the mask's edge to 1
    ``width`` pixels inside it (chessboard distance): it is 0 exactly where the mask is 0, so feathering never
    reaches the pixels kept. The image border is not an edge."""
    soft, eroded = torch.zeros_like(redraw), redraw
    for _ in range(max(1, width)):
        soft += eroded
        eroded = -F.max_pool2d(-eroded, 3, stride=1, padding=1)  # pooling pads with -inf: borders do not erode
    return soft / max(1, width)


def composite_inpainted(
    generated: torch.Tensor, init_image: torch.Tensor, redraw: torch.Tensor, feather: int = INPAINT_FEATHER
) -> torch.Tensor:
    """``soft × generated + (1 − soft) × init_image`` with ``soft = feather_inward(redraw)``: every pixel outside
    the binary N×1×H×W mask ``redraw`` is ``init_image``'s own value, bit for bit."""
    soft = feather_inward(redraw, feather)
    return torch.where(soft > 0, soft * generated + (1 - soft) * init_image, init_image)


def layouts_per_image(layout: torch.Tensor, num_images: int, num_classes: int | None) -> torch.Tensor:
    """An H×W layout repeated for each image (or N×H×W, one per image) as class ids, checked against
    ``num_classes`` (None: classes unknown, only negative ids are refused)."""
    layout = layout.long()
    if layout.dim() == 2:
        layout = layout.expand(num_images, -1, -1)
    elif len(layout) != num_images:
        raise InputError(None, f"{len(layout)} layouts for {num_images} images")
    if num_classes is None:
        if int(layout.min()) < 0:
            raise InputError(None, "layout has negative class ids")
    elif int(layout.min()) < 0 or int(layout.max()) >= num_classes:
        raise InputError(None, f"layout has class ids outside 0..{num_classes - 1}")
    return layout


@dataclass
class GenerationOutput:
    images: torch.Tensor  # B×3×H×W in [0, 1]; with output_type "latent", the scaled latents B×C×h×w
    prompts: list[str]
    seeds: list[int]
    # Per image, with the model's mean prior: the training tile drawn, its latent mean, the first timestep run.
    mean_prior_draws: list[dict] | None = None


class LayoutToImagePipeline:
    """``pipeline(prompt, layout=..., num_images=4, num_inference_steps=10, guidance_scale=3.0, seed=0)``; without
    ``guidance_scale``, the model's own default (``EmbeddedModelConfig.guidance_scale``).

    Classifier-free guidance drops prompt and layout together in the unconditional branch, matching the
    condition dropout used in training. ``guidance_interval=(low, high)`` applies it only at timesteps t with
    low <= t / T <= high (T training timesteps); elsewhere the conditional prediction is used alone.
    ``guidance_rescale`` (φ in Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps Are Flawed")
    blends the guided prediction with a copy rescaled to the conditional prediction's per-image std, which
    undoes the over-saturation strong guidance causes; 0 is plain guidance.
    ``output_type="latent"`` skips decoding and returns the denoiser's latents in its own (scaled) units.
    ``init_latents`` (scaled latents, one per image or one for all) with ``strength`` < 1 starts from them instead
    of pure noise (SDEdit, Meng et al. 2022): they are noised to the level of the sampler's step
    ``num_inference_steps × (1 − strength)`` and only the remaining steps run, so a low strength keeps their
    layout and colours and redraws their texture (at strength 1 all steps run, from pure noise only where the
    schedule ends at zero SNR). ``init_image`` (N×3×H×W or 3×H×W in [0, 1], at the output size) gives the same
    start in pixels: it is encoded when ``init_latents`` is not given.
    ``inpaint_mask`` (N×1×H×W, 1×H×W or H×W at the output's pixel size; > 0.5 redraws, the rest is kept) with
    ``init_image`` inpaints: the region is redrawn to fit the layout and its surroundings, and every pixel outside
    it is ``init_image``'s own. After each step the latents outside the mask (taken at latent resolution and
    dilated by one latent pixel) are replaced by the init latents noised to the next step's level (the latent
    blending of diffusers' ``StableDiffusionInpaintPipeline`` for UNets without mask channels; RePaint, Lugmayr
    et al. 2022, without its resampling), so the region grows out of its surroundings; the decoded image is then
    composited over ``init_image`` with the mask feathered inward only (``composite_inpainted``). At
    ``strength`` 1 the region starts from pure noise; below 1, from the init latents noised as for SDEdit.
    With ``output_type="latent"`` the blended latents are returned, not composited.
    A model with a mean prior (``models/mean_prior.py``) draws each layout-conditioned image's latent mean from
    training tiles of the same class shares and starts from it, noised to the prior's ``start`` level, instead of
    from pure noise; ``mean_prior=False`` turns that off, and it is not used with ``init_latents`` or without a
    layout. Each draw is in ``GenerationOutput.mean_prior_draws``.
    A layout larger than the model's working size (``EmbeddedModelConfig.sample_size``) is sampled in overlapping
    latent windows whose predictions are fused at every step, and decoded window by window
    (``generate/multidiffusion.py``, MultiDiffusion); memory is bounded by a window, not the scene. At or below
    the working size nothing changes.
    ``sample(prompts, layout, sampling, seeds)`` is the same call with a :class:`~.sampling.Sampling` (the
    :class:`~.sampling.Generator` protocol).
    """

    name = "the embedded model"
    sampling_options = frozenset({"guidance_interval", "guidance_rescale", "strength", "use_mean_prior"})

    def __init__(
        self,
        model: EmbeddedDiffusionModel,
        scheduler: str = DEFAULT_SCHEDULER,
        model_id: str = "",
        text_encoder=None,
    ):
        self.model = model.eval().requires_grad_(False)
        self.training_scheduler = model.config.noise_scheduler()
        self.scheduler_name = scheduler
        self.model_id = model_id or model.config.name
        self._text_encoder = text_encoder

    @classmethod
    def from_pretrained(cls, directory: str | Path, scheduler: str = DEFAULT_SCHEDULER) -> LayoutToImagePipeline:
        return cls(EmbeddedDiffusionModel.from_pretrained(directory), scheduler, model_id=str(directory))

    @property
    def layout_classes(self) -> ClassTable | None:
        return self.model.config.layout_classes

    def to(self, device: torch.device | str) -> LayoutToImagePipeline:
        self.model.to(device)
        return self

    @property
    def default_guidance_scale(self) -> float:
        return self.model.config.guidance_scale

    @property
    def default_steps(self) -> int:
        return self.model.config.sampling_steps

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from ..models.text import default_text_encoder

            self._text_encoder = default_text_encoder()
        return self._text_encoder

    def encode_condition(self, prompts: list[str], scene_classes: list[int] | None) -> torch.Tensor:
        config = self.model.config
        batch = len(prompts)
        if config.conditioning == "text":
            keep = torch.tensor([bool(p) for p in prompts])
            embeds = self.text_encoder.encode([p or "" for p in prompts]).to(self.model.device)
            return self.model.condition(batch, text_embeds=embeds, keep=keep.to(self.model.device))
        if config.conditioning == "class" and scene_classes is not None:
            ids = torch.tensor(scene_classes, device=self.model.device)
            return self.model.condition(batch, class_ids=ids)
        return self.model.condition(batch)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] = "",
        layout: torch.Tensor | None = None,
        num_images: int = 1,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | list[int] | None = None,
        scene_class: int | None = None,
        guidance_interval: tuple[float, float] | None = None,
        guidance_rescale: float = 0.0,
        scheduler: str | None = None,
        batch_size: int = 16,
        progress: bool = False,
        output_type: str = "image",
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        mean_prior: bool | None = None,
        init_image: torch.Tensor | None = None,
        inpaint_mask: torch.Tensor | None = None,
    ) -> GenerationOutput:
        model, config = self.model, self.model.config
        # 1. Check inputs.
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        guidance_scale = resolve_guidance_scale(self, guidance_scale)
        prompts, seeds = prompts_and_seeds(prompt, num_images, seed)
        num_images = len(prompts)
        num_inference_steps = resolve_steps(self, num_inference_steps)
        low, high = check_guidance_interval(guidance_interval) or (0.0, 1.0)
        check_guidance_rescale(guidance_rescale)
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if inpaint_mask is not None and init_image is None:
            raise ValueError("inpaint_mask needs init_image: the pixels to keep outside the mask")
        from_init = init_latents is not None or init_image is not None
        steps_run = max(1, round(num_inference_steps * strength)) if from_init else num_inference_steps
        begin = num_inference_steps - steps_run
        num_train_timesteps = self.training_scheduler.config.num_train_timesteps
        if layout is not None:
            if config.class_table is None:
                raise InputError(None, "this model takes no layout", "generate from a prompt alone")
            layout = layouts_per_image(layout, num_images, config.num_layout_channels - 1)
            height, width = layout.shape[-2:]
        elif init_image is not None:
            height, width = height or init_image.shape[-2], width or init_image.shape[-1]
        height, width = height or 256, width or 256
        multiple = config.size_multiple
        padded_h, padded_w = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        if layout is not None and (padded_h, padded_w) != (height, width):
            # Reflect-pad the layout to a size the UNet accepts; the output is cropped back.
            layout = F.pad(layout[:, None].float(), (0, padded_w - width, 0, padded_h - height), mode="replicate")[
                :, 0
            ].long()
        sampler = make_scheduler(scheduler or self.scheduler_name, self.training_scheduler)
        latent_h, latent_w = padded_h // config.downsampling, padded_w // config.downsampling
        windows = scene_windows(config, (latent_h, latent_w))  # None: the scene is sampled whole
        if windows is not None:
            log.info(
                "%d×%d px sampled in %d overlapping windows of %d×%d latents",
                width,
                height,
                len(windows),
                *windows.window,
            )
        if init_latents is not None:
            init_latents = check_per_image(
                init_latents, "init_latents", num_images, config.image_channels, (latent_h, latent_w)
            )
        if init_image is not None:
            init_image = check_per_image(init_image, "init_image", num_images, 3, (height, width))
        latent_mask = None
        if inpaint_mask is not None:
            inpaint_mask = (check_per_image(inpaint_mask, "inpaint_mask", num_images, 1, (height, width)) > 0.5).float()
            latent_mask = self.latent_mask(inpaint_mask, (padded_h, padded_w))
        draws = None
        if self.uses_mean_prior(mean_prior, layout, init_latents if init_image is None else init_image):
            sampler.set_timesteps(num_inference_steps)
            skipped = int((sampler.timesteps > config.mean_prior.start * num_train_timesteps).sum())
            if 0 < skipped < num_inference_steps:  # with one step there is nothing to start later from
                begin, steps_run = skipped, num_inference_steps - skipped
                start_timestep = int(sampler.timesteps[begin])
                init_latents, draws = self.draw_mean_latents(layout, seeds, (latent_h, latent_w), start_timestep)
                from_init = True
        images = []
        chunks = range(0, num_images, batch_size)
        bar = tqdm(total=num_images * steps_run, disable=not progress, desc="generating")
        for start in chunks:
            stop = min(start + batch_size, num_images)
            count = stop - start
            # 2. Encode the prompt (conditional and null embeddings).
            condition = self.encode_condition(
                prompts[start:stop], None if scene_class is None else [scene_class] * count
            )
            null_condition = model.condition(count)
            # 3. Prepare the layout channels at latent resolution.
            chunk_layout = None if layout is None else layout[start:stop]
            if windows is None or chunk_layout is None:
                layout_channels = model.layout_channels(chunk_layout, count, (latent_h, latent_w))
            else:
                layout_channels = layout_channels_in_strips(model, chunk_layout, count, (latent_h, latent_w))
            null_layout = model.layout_channels(None, count, (latent_h, latent_w))
            # 4. Timesteps and 5. initial noise.
            sampler.set_timesteps(num_inference_steps)
            generator = [torch.Generator().manual_seed(s) for s in seeds[start:stop]]
            noise = torch.cat(
                [torch.randn(1, config.image_channels, latent_h, latent_w, generator=g) for g in generator]
            ).to(model.device)
            timesteps_run = sampler.timesteps[begin:]
            if not from_init:
                latents = noise * sampler.init_noise_sigma
            else:
                if hasattr(sampler, "set_begin_index"):
                    sampler.set_begin_index(begin)
                if init_latents is None:
                    chunk_init = self.encode_init_image(init_image[start:stop], (padded_h, padded_w))
                else:
                    chunk_init = init_latents[start:stop]
                chunk_init = chunk_init.to(model.device, noise.dtype)
                latents = sampler.add_noise(chunk_init, noise, timesteps_run[:1].repeat(count))
            chunk_mask = None if latent_mask is None else latent_mask[start:stop].to(model.device, noise.dtype)
            if chunk_mask is not None:
                if steps_run == num_inference_steps:  # strength 1: the region starts from pure noise
                    latents = torch.lerp(latents, noise * sampler.init_noise_sigma, chunk_mask)
            use_guidance = guidance_scale != 1.0
            # 6. Denoising loop (inpainting: the latents outside the mask follow the init latents' noising; a
            # scene over the working size: each window denoised with its layout, the predictions fused).
            for index, t in enumerate(timesteps_run):
                model_input = sampler.scale_model_input(latents, t)
                timesteps = torch.full((count,), int(t), device=model.device)
                guidance = None
                if use_guidance and low <= int(t) / num_train_timesteps <= high:
                    guidance = (guidance_scale, guidance_rescale)
                conditions = (timesteps, condition, null_condition, guidance)
                if windows is None:
                    prediction = self.predict(model_input, layout_channels, null_layout, *conditions)
                else:
                    prediction = predict_in_windows(
                        windows, self.predict, model_input, layout_channels, null_layout, *conditions
                    )
                latents = sampler.step(prediction, t, latents, generator=generator).prev_sample
                if chunk_mask is not None:
                    known = chunk_init
                    if index + 1 < len(timesteps_run):
                        known = sampler.add_noise(chunk_init, noise, timesteps_run[index + 1 : index + 2].repeat(count))
                    latents = torch.lerp(known, latents, chunk_mask)
                bar.update(count)
            # 7. Decode (or hand back the scaled latents, cropped to the image's latent extent); inpainting:
            # composite over the init image.
            if output_type == "latent":
                down = config.downsampling
                images.append(latents.cpu()[..., : -(-height // down), : -(-width // down)])
            else:
                decoded = (
                    model.decode_latents(latents) if windows is None else decode_in_windows(model, latents, windows)
                )
                decoded = decoded.cpu()[..., :height, :width]
                if inpaint_mask is not None:
                    pixels, redraw = init_image[start:stop].to(decoded), inpaint_mask[start:stop].to(decoded)
                    decoded = composite_inpainted(decoded, pixels, redraw)
                images.append(decoded)
        bar.close()
        return GenerationOutput(torch.cat(images), prompts, seeds, draws)

    def predict(self, model_input, layout_channels, null_layout, timesteps, condition, null_condition, guidance):
        """The denoiser's prediction; with ``guidance`` (scale, rescale), classifier-free guided: the conditional
        and the unconditional (null condition, null layout) predictions in one batch, combined."""
        model = self.model
        if guidance is None:
            return model.predict(model_input, timesteps, layout_channels, condition)
        guidance_scale, guidance_rescale = guidance
        both = model.predict(
            torch.cat([model_input, model_input]),
            torch.cat([timesteps, timesteps]),
            None if layout_channels is None else torch.cat([layout_channels, null_layout]),
            torch.cat([condition, null_condition]),
        )
        conditional, unconditional = both.chunk(2)
        prediction = unconditional + guidance_scale * (conditional - unconditional)
        if guidance_rescale:
            prediction = rescale_guided(prediction, conditional, guidance_rescale)
        return prediction

    def sample(
        self,
        prompts: list[str],
        layout: torch.Tensor | None,
        sampling: Sampling,
        seeds: list[int],
        *,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 16,
        progress: bool = False,
        init_image: torch.Tensor | None = None,
        inpaint_mask: torch.Tensor | None = None,
    ) -> GenerationOutput:
        """``__call__`` with the options of ``sampling``; ``strength`` applies with an ``init_image``."""
        start = {}
        if init_image is not None:
            start = {"init_image": init_image, "inpaint_mask": inpaint_mask, "strength": sampling.strength or 0.3}
        return self(
            prompts,
            layout=layout,
            height=height,
            width=width,
            num_inference_steps=sampling.steps,
            guidance_scale=sampling.guidance_scale,
            seed=list(seeds),
            guidance_interval=sampling.guidance_interval,
            guidance_rescale=sampling.guidance_rescale,
            scheduler=sampling.scheduler,
            batch_size=batch_size,
            progress=progress,
            mean_prior=None if sampling.use_mean_prior else False,
            **start,
        )

    def encode_init_image(self, images: torch.Tensor, padded: tuple[int, int]) -> torch.Tensor:
        """Scaled latents of N×3×H×W images in [0, 1], replicate-padded to ``padded`` (a size the UNet takes)."""
        height, width = images.shape[-2:]
        images = F.pad(images.float(), (0, padded[1] - width, 0, padded[0] - height), mode="replicate")
        return self.model.encode_images(images.to(self.model.device))

    def latent_mask(self, redraw: torch.Tensor, padded: tuple[int, int]) -> torch.Tensor:
        """A binary N×1×H×W pixel mask at latent resolution: a latent pixel is redrawn when any pixel it covers
        is, grown by one latent pixel: the decoder spreads each latent over its neighbours' pixels, so the pixels
        along the mask's inner edge are decoded from sampled latents too, not from the init latents alone."""
        height, width = redraw.shape[-2:]
        redraw = F.pad(redraw, (0, padded[1] - width, 0, padded[0] - height), mode="replicate")
        down = self.model.config.downsampling
        latent = F.max_pool2d(redraw, down, stride=down) if down > 1 else redraw
        return F.max_pool2d(latent, 3, stride=1, padding=1)

    def uses_mean_prior(self, mean_prior: bool | None, layout, init_latents) -> bool:
        """Whether to start from the model's mean prior: by default when the model has one, a layout is given
        and no ``init_latents``; ``mean_prior=True`` where that cannot be is an error."""
        if mean_prior is False:
            return False
        reason = None
        if self.model.mean_prior is None:
            reason = "this model has no mean prior (terrasynth export --mean-prior DATA adds one)"
        elif layout is None:
            reason = "the mean prior draws by layout: give a layout"
        elif init_latents is not None:
            reason = "init_latents already set where sampling starts"
        if reason is not None and mean_prior:
            raise ValueError(f"mean_prior=True: {reason}")
        return reason is None

    def draw_mean_latents(self, layout, seeds: list[int], latent_size: tuple[int, int], start_timestep: int):
        """Constant latents (N×C×h×w) at each image's drawn mean, and the draws' records."""
        model = self.model
        num_classes = model.config.num_layout_channels - 1
        latents, draws = [], []
        for image_layout, seed in zip(layout, seeds):
            shares = class_shares(image_layout, num_classes)
            index, mean = model.mean_prior.draw(shares, model.config.mean_prior.neighbours, seed)
            latents.append(mean[:, None, None].expand(-1, *latent_size))
            latent_mean = [round(float(v), 4) for v in mean]
            draws.append({"training_tile": index, "latent_mean": latent_mean, "start_timestep": start_timestep})
        return torch.stack(latents), draws
