"""The study's two image sets: opaque ids, checks at start-up, and clean PNG bytes for the browser.

A rater must judge pixels, not files: every image is decoded and re-encoded as a plain PNG with no metadata
(generated files carry provenance text chunks, and a real JPEG next to a synthetic PNG would give the answer
away). Ids are the SHA-256 of the file's bytes, never a path.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data.images import list_images, read_image
from ..errors import InputError
from ..files import file_sha256
from .db import REAL, SYNTHETIC

log = logging.getLogger(__name__)

IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class CatalogImage:
    id: str
    truth: str
    path: Path
    width: int
    height: int


def _decode(path: Path) -> np.ndarray:
    """uint8 H×W×3 pixels of ``path`` (InputError naming the file if unreadable)."""
    array = read_image(path).permute(1, 2, 0).numpy()
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


class ImageCatalog:
    """The real and synthetic images by id. Only these files can ever be served."""

    def __init__(self, real_dir: str | Path, fake_dir: str | Path, check_provenance: bool = True):
        self.images: dict[str, CatalogImage] = {}
        for truth, folder in ((REAL, real_dir), (SYNTHETIC, fake_dir)):
            self._add_folder(truth, Path(folder), check_provenance)
        sizes = {
            truth: {(i.width, i.height) for i in self.images.values() if i.truth == truth}
            for truth in (REAL, SYNTHETIC)
        }
        if sizes[REAL] != sizes[SYNTHETIC]:
            log.warning(
                "real and synthetic images differ in size (real %s, synthetic %s): raters may tell them apart "
                "by size alone",
                sorted(sizes[REAL]),
                sorted(sizes[SYNTHETIC]),
            )
        counts = self.counts()
        log.info("study images: %d real, %d synthetic", counts[REAL], counts[SYNTHETIC])

    def _add_folder(self, truth: str, folder: Path, check_provenance: bool) -> None:
        from ..generate.provenance import read_provenance

        for path in list_images(folder):
            image_id = file_sha256(path)
            known = self.images.get(image_id)
            if known is not None:
                if known.truth != truth:
                    raise InputError(
                        path,
                        f"the same file is in both sets (also {known.path})",
                        "an image is either real or synthetic: remove it from one folder",
                    )
                log.warning("%s duplicates %s; it is shown once", path, known.path)
                continue
            if check_provenance and truth == REAL:
                record = read_provenance(path)
                if record is not None and record.synthetic:
                    raise InputError(
                        path,
                        "this 'real' image carries a terrasynth provenance record saying it is synthetic",
                        "check that --real and --fake are not swapped or mixed",
                    )
            pixels = _decode(path)
            self.images[image_id] = CatalogImage(image_id, truth, path.resolve(), pixels.shape[1], pixels.shape[0])

    def counts(self) -> dict[str, int]:
        counts = {REAL: 0, SYNTHETIC: 0}
        for image in self.images.values():
            counts[image.truth] += 1
        return counts

    def ids(self, truth: str) -> list[str]:
        return sorted(i.id for i in self.images.values() if i.truth == truth)

    def get(self, image_id: str) -> CatalogImage | None:
        if not isinstance(image_id, str) or not IMAGE_ID.match(image_id):
            return None
        return self.images.get(image_id)

    def __iter__(self) -> Iterable[CatalogImage]:
        return iter(self.images.values())

    def __len__(self) -> int:
        return len(self.images)

    def png_bytes(self, image_id: str) -> bytes:
        """The image as a metadata-free PNG (cached)."""
        image = self.images[image_id]
        return _encode_png(image.path, image.id)


@lru_cache(maxsize=256)
def _encode_png(path: Path, image_id: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_decode(path)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
