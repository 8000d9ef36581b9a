"""pix2pix behind the same call as the diffusion pipelines, so ``terrasynth generate --model pix2pix`` works.

One forward pass from layout to image: the prompt, steps, guidance and scheduler do not apply (provenance
records them as given). As in Isola et al. (2017), dropout is pix2pix's only noise. ``stochastic=True`` keeps it
on at inference, seeded per image, so the images of one layout differ; ``stochastic=False`` gives the
deterministic generator that the realism baseline scores.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.classes import ClassTable
from ..errors import InputError
from ..models.pix2pix import CLASSES_NAME, CONFIG_NAME, WEIGHTS_NAME, UNetGenerator, load_pix2pix
from .pipeline import GenerationOutput, layouts_per_image, prompts_and_seeds
from .sampling import Sampling


def is_pix2pix_model(path: str | Path) -> bool:
    path = Path(path)
    return (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()


class Pix2PixGenerator:
    """``generator(prompt, layout=..., num_images=4, seed=0)`` → :class:`GenerationOutput`."""

    name = "pix2pix"
    default_guidance_scale = 1.0  # pix2pix has no guidance: 1 is "unguided" in provenance records
    default_steps = 1  # one forward pass
    sampling_options: frozenset[str] = frozenset()  # steps, guidance and scheduler are recorded, not used

    def __init__(self, generator: UNetGenerator, class_table: ClassTable, stochastic: bool = True):
        if len(class_table) != generator.config.num_classes:
            raise ValueError(f"{len(class_table)} classes in the table, {generator.config.num_classes} in the model")
        self.generator = generator.eval()
        self.layout_classes = class_table
        self.stochastic = stochastic

    def to(self, device: torch.device | str) -> Pix2PixGenerator:
        self.generator.to(device)
        return self

    @classmethod
    def from_pretrained(cls, directory: str | Path, stochastic: bool = True) -> Pix2PixGenerator:
        directory = Path(directory)
        if not (directory / CLASSES_NAME).is_file():
            raise InputError(directory, f"no {CLASSES_NAME}: the layout classes of this pix2pix model are unknown")
        return cls(load_pix2pix(directory), ClassTable.from_json(directory / CLASSES_NAME), stochastic)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] = "",
        layout: torch.Tensor | None = None,
        num_images: int = 1,
        height: int | None = None,
        width: int | None = None,
        seed: int | list[int] | None = None,
    ) -> GenerationOutput:
        if layout is None:
            raise InputError(None, "pix2pix draws an image from a layout only", "give --layout")
        prompts, seeds = prompts_and_seeds(prompt, num_images, seed)
        layout = layouts_per_image(layout, len(prompts), len(self.layout_classes))
        if height and width and (height, width) != tuple(layout.shape[-2:]):
            layout = F.interpolate(layout[:, None].float(), (height, width), mode="nearest")[:, 0].long()
        images = []
        for index, image_seed in enumerate(seeds):
            with torch.random.fork_rng():
                torch.manual_seed(image_seed)
                device = next(self.generator.parameters()).device
                images.append(self.generator.generate(layout[index].to(device), dropout=self.stochastic).cpu())
        self.generator.eval()
        return GenerationOutput(torch.stack(images).clamp(0, 1), prompts, seeds)

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
    ) -> GenerationOutput:
        """One forward pass per seed; ``sampling`` has no option pix2pix uses."""
        if init_image is not None or inpaint_mask is not None:
            raise InputError(None, "pix2pix takes no init image", "use an embedded model")
        return self(prompts, layout=layout, height=height, width=width, seed=list(seeds))


__all__ = ["Pix2PixGenerator", "is_pix2pix_model"]
