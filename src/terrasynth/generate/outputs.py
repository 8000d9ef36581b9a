"""Writing generated images: one file per image with provenance in its metadata, and a contact grid."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..data.grids import image_grid, to_uint8, write_png
from ..data.layouts import Layout
from .content_credentials import SignerConfig, sign_file
from .provenance import ProvenanceRecord, layout_sha256, utc_timestamp, write_geotiff
from .provenance import write_png as write_png_with_provenance
from .sampling import Sampling, sampling_extra


def provenance_records(
    output,
    model_id: str,
    model_sha256: str,
    sampling: Sampling,
    layout: Layout | None,
    extra: dict | None = None,
) -> list[ProvenanceRecord]:
    """One record per image of ``output`` (a ``GenerationOutput``), made with ``sampling`` resolved against the
    generator (steps and guidance scale set). The options set away from their defaults go into ``extra``, so plain
    records stay as they were."""
    if sampling.steps is None or sampling.guidance_scale is None:
        raise ValueError("provenance needs the sampling resolved against its generator (Sampling.resolve)")
    extra = {**(extra or {}), **sampling_extra(sampling)}
    created = utc_timestamp()
    height, width = output.images.shape[-2:]
    # The mean prior's draw differs from image to image: the training tile and the latent mean it started from.
    draws = output.mean_prior_draws or [None] * len(output.prompts)
    return [
        ProvenanceRecord(
            synthetic=True,
            generator=f"terrasynth {__version__}",
            model=model_id,
            model_sha256=model_sha256,
            prompt=prompt,
            negative_prompt=None,
            seed=seed,
            steps=int(sampling.steps),
            guidance_scale=float(sampling.guidance_scale),
            scheduler=sampling.scheduler,
            layout_sha256=None if layout is None else layout_sha256(layout.classes),
            layout_source=None if layout is None else layout.source,
            width=int(width),
            height=int(height),
            created=created,
            extra=extra if draw is None else {**extra, "mean_prior": draw},
        )
        for prompt, seed, draw in zip(output.prompts, output.seeds, draws)
    ]


def write_generated(
    images: torch.Tensor,
    records: list[ProvenanceRecord],
    out_dir: str | Path,
    stem: str = "generated",
    layout: Layout | None = None,
    names: list[str] | None = None,
    watermark: bool = True,
    signer: SignerConfig | None = None,
    regions: list[np.ndarray | None] | None = None,
) -> list[Path]:
    """Write each image as PNG, or as GeoTIFF on the layout's grid when the layout is georeferenced.

    Files are named ``{stem}-{index:03d}``, or by ``names`` (one file stem per image) when given. Each image
    carries an invisible watermark (payload: model id + hash of its record) named in the record's ``watermark``
    field; with ``watermark=False`` the field says ``"none"``. With a ``signer``, each file also carries signed
    Content Credentials (C2PA), embedded before the file appears under its name. ``regions`` (one bool H×W array
    or None per image; inpainting passes its mask) confines the watermark to a region: no pixel outside it
    changes, and a region too small to carry the mark leaves the image unmarked (``watermark_skipped`` in the
    record's extra)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    georeference = None if layout is None else layout.georeference
    for index, (image, record) in enumerate(zip(images, records)):
        region = None if regions is None else regions[index]
        array, record = _watermarked(to_uint8(image), record, watermark, region)
        name = names[index] if names is not None else f"{stem}-{index:03d}"
        if georeference is not None:
            path = out_dir / f"{name}.tif"
            with _signed(path, record, signer) as target:
                write_geotiff(target, array, record, georeference["crs"], georeference["transform"])
        else:
            path = out_dir / f"{name}.png"
            with _signed(path, record, signer) as target:
                write_png_with_provenance(target, array, record)
        written.append(path)
    return written


@contextlib.contextmanager
def _signed(path: Path, record: ProvenanceRecord, signer: SignerConfig | None) -> Iterator[Path]:
    """Where to write ``path``: itself without a signer; else an unsigned temporary file whose signed copy is
    then written (atomically) to ``path``."""
    if signer is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as folder:
        unsigned = Path(folder) / "unsigned.tmp"
        yield unsigned
        sign_file(unsigned, record, signer, dest=path)


def _watermarked(array, record: ProvenanceRecord, enabled: bool, region: np.ndarray | None = None):
    """(image, record) with the watermark applied and named in the record, or the record marked "none". With a
    bool H×W ``region``, only pixels inside it change.

    The crop-proof default scheme needs ``MIN_WATERMARK_SIZE`` pixels a side; a smaller whole image gets the
    earlier scheme, which survives JPEG and resizing but not cropping, so every image of 16 px or more is marked and
    the record names the scheme that marked it. A redrawn region narrower than that is left unmarked, and the
    record says why."""
    from .watermark import DEFAULT_SCHEME, MIN_WATERMARK_SIZE, V1_SCHEME, apply_watermark, record_payload

    if not enabled:
        return array, dataclasses.replace(record, watermark="none")
    if region is not None:
        region = np.asarray(region, dtype=bool)
        rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        if len(rows) == 0:
            return array, _skipped(record, "no pixel was redrawn")
        extent = min(rows[-1] - rows[0], columns[-1] - columns[0]) + 1
    else:
        extent = min(array.shape[:2])
    if extent < 16:
        return array, _skipped(record, "image or region redrawn smaller than 16 px")
    if region is not None and extent < MIN_WATERMARK_SIZE:
        # the earlier scheme spreads its mark over the whole image: confined to a small region it does not read back
        return array, _skipped(record, f"region redrawn narrower than {MIN_WATERMARK_SIZE} px, too small for the mark")
    scheme = DEFAULT_SCHEME if extent >= MIN_WATERMARK_SIZE else V1_SCHEME
    try:
        marked, label = apply_watermark(array, record_payload(record), scheme=scheme, region=region)
    except ValueError as error:  # the scheme's own judgement that the region cannot carry the mark
        return array, _skipped(record, f"region redrawn cannot carry the mark ({error})")
    if region is not None:
        marked = np.where(region[..., None], marked, array)  # kept pixels stay the init image's, whatever the scheme
    return marked, dataclasses.replace(record, watermark=label)


def _skipped(record: ProvenanceRecord, reason: str) -> ProvenanceRecord:
    return dataclasses.replace(record, watermark="none", extra={**record.extra, "watermark_skipped": reason})


def write_contact_grid(
    images: torch.Tensor, out_path: str | Path, layout: Layout | None = None, columns: int | None = None
) -> Path:
    """Layout (rendered in its display colours) first, then every generated image."""
    tiles = list(images)
    if layout is not None:
        rendered = torch.from_numpy(layout.class_table.render(layout.classes)).permute(2, 0, 1) / 255.0
        tiles = [rendered] + tiles
    return write_png(out_path, image_grid(tiles, columns or min(len(tiles), 5)))
