"""How to sample, as one object, and what a generator is.

``Sampling`` holds every sampling option ``terrasynth generate`` and ``terrasynth synthesize`` take; a
``Generator`` (the embedded ``LayoutToImagePipeline``, ``StableDiffusionGenerator``, ``Pix2PixGenerator``) names
the options it supports, and ``check_sampling`` refuses any other before a model samples. Provenance records the
options that differ from their defaults (``sampling_extra``), so a new option is one field here plus the code that
uses it.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Protocol, runtime_checkable

import torch

from ..data.classes import ClassTable
from ..errors import InputError
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS, scheduler_name

# Options every generator takes: a ProvenanceRecord has a field for each (pix2pix records them as given).
RECORD_FIELDS = ("steps", "guidance_scale", "scheduler")


def check_guidance_interval(interval) -> tuple[float, float] | None:
    """``(low, high)``, fractions of the training noise schedule (1 = pure noise) between which classifier-free
    guidance is applied (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample and
    Distribution Quality"); None: at every step."""
    if interval is None:
        return None
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"guidance_interval must be two numbers (low, high), got {interval!r}") from None
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"guidance_interval must satisfy 0 <= low <= high <= 1, got ({low:g}, {high:g})")
    return low, high


def check_guidance_rescale(value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"guidance_rescale must be in [0, 1], got {value}")
    return float(value)


def _option(default, flag: str, label: str, takes: str = "every generator"):
    """A field with its CLI flag, its name in messages and which generators take it."""
    return dataclasses.field(default=default, metadata={"flag": flag, "label": label, "takes": takes})


EMBEDDED_ONLY = "the embedded model's sampler only"


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Sampling options. ``steps``/``guidance_scale`` None: the generator's own defaults (``resolve``).
    ``guidance_interval``: guide only at noise levels low <= t/T <= high; ``guidance_rescale``: φ of Lin et al.
    2024; ``strength``: the share of steps redrawn from an init image (None: 0.3, or 1 when inpainting);
    ``use_mean_prior``: start from the model's mean prior where it has one (False: from pure noise)."""

    steps: int | None = _option(None, "--steps", "sampling steps")
    guidance_scale: float | None = _option(None, "--guidance", "guidance scale")
    scheduler: str = _option(DEFAULT_SCHEDULER, "--scheduler", "scheduler")
    guidance_interval: tuple[float, float] | None = _option(
        None, "--guidance-interval", "guidance interval", EMBEDDED_ONLY
    )
    guidance_rescale: float = _option(
        0.0, "--guidance-rescale", "guidance rescale", "the embedded model and Stable Diffusion without ControlNet"
    )
    strength: float | None = _option(None, "--strength", "init-image strength", EMBEDDED_ONLY)
    use_mean_prior: bool = _option(True, "--no-mean-prior", "mean prior", EMBEDDED_ONLY)

    def __post_init__(self) -> None:
        if self.steps is not None and (isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1):
            raise InputError(None, f"--steps must be a whole number of at least 1, got {self.steps!r}")
        try:
            object.__setattr__(self, "scheduler", scheduler_name(self.scheduler))
        except ValueError:
            raise InputError(
                None, f"unknown --scheduler {self.scheduler!r}", f"one of {', '.join(SCHEDULERS)}"
            ) from None
        try:
            object.__setattr__(self, "guidance_interval", check_guidance_interval(self.guidance_interval))
        except ValueError as error:
            raise InputError(None, f"--guidance-interval: {error}", "give LOW,HIGH, e.g. 0.5,1") from None
        try:
            object.__setattr__(self, "guidance_rescale", check_guidance_rescale(self.guidance_rescale))
        except ValueError as error:
            raise InputError(None, f"--guidance-rescale: {error}", "give a number from 0 (off) to 1") from None
        if self.strength is not None and not 0 < self.strength <= 1:
            raise InputError(None, f"--strength must be in (0, 1], got {self.strength}")
        if self.guidance_scale is not None:
            object.__setattr__(self, "guidance_scale", float(self.guidance_scale))

    def resolve(self, generator: Generator) -> Sampling:
        """This with ``steps`` and ``guidance_scale`` filled in from the generator's defaults."""
        return dataclasses.replace(
            self,
            steps=generator.default_steps if self.steps is None else self.steps,
            guidance_scale=generator.default_guidance_scale if self.guidance_scale is None else self.guidance_scale,
        )

    def changed(self) -> dict[str, object]:
        """The options set away from their defaults, by field name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}


def sampling_extra(sampling: Sampling) -> dict:
    """Provenance ``extra`` entries for the options that differ from their defaults, beyond the record's own
    steps/guidance/scheduler fields (JSON values: tuples become lists)."""
    extra = {}
    for name, value in sampling.changed().items():
        if name not in RECORD_FIELDS:
            extra[name] = [float(v) for v in value] if isinstance(value, tuple) else value
    return extra


@runtime_checkable
class Generator(Protocol):
    """What ``generate_images``, ``generate/batch.py`` and ``synthesize`` need of a model."""

    name: str  # for messages: "the embedded model", "StableDiffusionControlNetPipeline", "pix2pix"
    layout_classes: ClassTable | None  # None: takes no layout
    default_steps: int
    default_guidance_scale: float
    sampling_options: frozenset[str]  # Sampling fields beyond RECORD_FIELDS this generator uses

    def to(self, device: torch.device | str) -> Generator:
        """The generator on ``device`` (one GPU per process under accelerate)."""

    def sample(
        self,
        prompts: list[str],
        layout: torch.Tensor | None,
        sampling: Sampling,
        seeds: list[int],
        *,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 8,
        progress: bool = False,
        init_image: torch.Tensor | None = None,
        inpaint_mask: torch.Tensor | None = None,
    ):
        """Images for ``prompts`` (one per seed), as a ``pipeline.GenerationOutput``."""


class LoadedGenerator(NamedTuple):
    """A generator with what provenance names it by: ``load_pipeline``'s result."""

    generator: Generator
    model_id: str
    model_sha256: str


def check_sampling(generator: Generator, sampling: Sampling, init_image=None) -> None:
    """The one place an option a generator does not take is refused (InputError naming the option)."""
    for name in sampling.changed():
        if name in RECORD_FIELDS or name in generator.sampling_options:
            continue
        spec = next(f for f in dataclasses.fields(Sampling) if f.name == name)
        flag, label, takes = spec.metadata["flag"], spec.metadata["label"], spec.metadata["takes"]
        raise InputError(None, f"{generator.name} has no {label}: {flag} is an option of {takes}", f"leave {flag} out")
    if init_image is not None and "strength" not in generator.sampling_options:
        raise InputError(init_image, "--init-image needs an embedded model", "use the default model or one from train")


__all__ = ["RECORD_FIELDS", "Generator", "LoadedGenerator", "Sampling", "check_sampling", "sampling_extra"]
