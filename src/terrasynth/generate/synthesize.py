"""Labelled synthetic datasets: many layouts in, images with their layouts as labels out (``terrasynth synthesize``).

The steps, in order:

1. **Read the layouts** (``read_layouts``): a folder of layout files (mask PNG/GeoTIFF, colour-coded maps, GeoJSON),
   a paired-tiles dataset (``masks/`` + ``classes.json``), or a CSV of ``layout,prompt`` rows. Every layout is read
   and checked before the model loads; a bad one stops the run naming the file, or is listed in ``skipped.csv``.
2. **Plan the items** (``plan_items``): each layout, and each augmented copy of it (flips, 90° rotations, a class
   swap), K times. Item k of layout L has seed ``derive_seed(seed, L, k)``, a hash: its pixels depend neither on
   which other items share its batch nor on how many processes run.
3. **Sample** the items not yet on disk, split across processes by accelerate (``PartialState``), batched by size.
4. **Write** ``masks/<id>`` then ``images/<id>`` (PNG, or GeoTIFF on the layout's grid), each atomically, with
   provenance and the watermark as ``generate`` writes them. An item is complete when its image exists, so a
   killed run resumes where it stopped.
5. **Index**: one process rebuilds ``index.csv`` (and ``index.parquet`` with pyarrow) from the files that exist.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.captions import caption_from_layout
from ..data.classes import ClassTable
from ..data.images import GEOTIFF_SUFFIXES, IMAGE_SUFFIXES, read_georeference, read_mask
from ..data.layouts import Layout, load_layout
from ..errors import InputError, TerrasynthError
from ..files import atomic_path, file_sha256, read_json, write_json_atomic, write_text_atomic
from .content_credentials import SignerConfig, load_credentials
from .outputs import provenance_records, write_generated
from .pipeline import GenerationOutput
from .provenance import read_provenance
from .sampling import LoadedGenerator, Sampling, check_sampling

log = logging.getLogger(__name__)

LAYOUT_SUFFIXES = (*IMAGE_SUFFIXES, ".geojson", ".json")
AUGMENTATIONS = ("flip", "rot90")
INDEX_COLUMNS = (
    "id",
    "image",
    "mask",
    "layout_id",
    "layout_source",
    "augmentation",
    "k",
    "prompt",
    "seed",
    "model",
    "model_sha256",
    "sampler",
    "steps",
    "guidance_scale",
    "width",
    "height",
    "image_sha256",
    "mask_sha256",
)


@dataclasses.dataclass(frozen=True, eq=False)
class LayoutEntry:
    """One input layout: its id (a file-name-safe stem), where it came from, and its prompt when one was given."""

    layout_id: str
    source: str
    layout: Layout
    prompt: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class SynthesisItem:
    """One image to make: ``id`` names its files."""

    id: str
    layout_id: str
    augmentation: str  # "" for the layout as given
    k: int
    source: str
    layout: Layout
    prompt: str
    seed: int


@dataclasses.dataclass
class SynthesisResult:
    out_dir: Path
    planned: int
    written: int  # new images, by every process
    skipped: list[tuple[str, str]]
    load_seconds: float
    sample_seconds: float
    processes: int
    is_main_process: bool

    @property
    def images_per_second(self) -> float:
        return self.written / self.sample_seconds if self.sample_seconds > 0 else 0.0


def derive_seed(seed: int, layout_key: str, k: int) -> int:
    """The seed of image k of a layout (``layout_key``: its id and augmentation): a hash of the three, below 2³¹."""
    digest = hashlib.sha256(f"{int(seed)}\0{layout_key}\0{int(k)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# 1. Reading layouts ------------------------------------------------------------------------------------------------


def input_class_table(source: str | Path, class_table: str | Path | None, model: str | Path) -> ClassTable | None:
    """The layouts' classes: ``--class-table``, a paired-tiles dataset's ``classes.json``, else the model's, read
    from its folder without loading weights (None for a Stable Diffusion model: it must load first)."""
    if class_table is not None:
        return ClassTable.from_json(class_table)
    source = Path(source)
    if source.is_dir() and (source / "masks").is_dir() and (source / "classes.json").is_file():
        return ClassTable.from_json(source / "classes.json")
    from ..models.embedded import MODEL_CONFIG_NAME
    from ..models.pix2pix import CLASSES_NAME
    from ..models.registry import resolve_model_path
    from ..models.stable_diffusion import is_stable_diffusion_model
    from .pix2pix_generator import is_pix2pix_model

    if is_stable_diffusion_model(model):
        return None
    path = resolve_model_path(model)
    if is_pix2pix_model(path):
        return ClassTable.from_json(path / CLASSES_NAME)
    config = read_json(path / MODEL_CONFIG_NAME) if (path / MODEL_CONFIG_NAME).is_file() else {}
    table = config.get("class_table") if isinstance(config, dict) else None
    if table is None:
        raise InputError(path, "this model takes no layout", "synthesize needs a layout-conditioned model")
    return ClassTable.from_dict(table)


def read_layouts(
    source: str | Path,
    class_table: ClassTable,
    *,
    split: str = "all",
    size: int = 256,
    class_property: str = "class",
    class_map: dict | None = None,
    skip_bad: bool = False,
    size_limits: tuple[int, int, str] | None = None,
) -> tuple[list[LayoutEntry], list[tuple[str, str]]]:
    """(layouts, skipped as (source, problem)) of a folder of layout files, a paired-tiles dataset (its ``split``)
    or a CSV with a ``layout`` column (paths relative to the CSV) and an optional ``prompt`` column. A bad layout
    (unreadable, or with ``size_limits`` = (minimum side, maximum pixels, why the minimum) outside them) raises
    InputError naming it, or with ``skip_bad`` is skipped; none left is an error either way."""
    source = Path(source)
    if not source.exists():
        raise InputError(source, "not found", "give a folder of layouts, a paired-tiles dataset or a CSV")
    if source.is_dir() and (source / "masks").is_dir() and (source / "classes.json").is_file():
        jobs = _paired_jobs(source, split, class_table)
    elif source.is_dir():
        jobs = _folder_jobs(source, class_table, size, class_property, class_map)
    elif source.suffix.lower() == ".csv":
        jobs = _csv_jobs(source, class_table, size, class_property, class_map)
    else:
        jobs = [(source.stem, str(source), None, _loader(source, class_table, size, class_property, class_map))]
    if not jobs:
        raise InputError(source, "no layout files found", f"expected files ending in {', '.join(LAYOUT_SUFFIXES)}")
    _check_unique_ids(source, [j[0] for j in jobs])
    entries, skipped = [], []
    for layout_id, where, prompt, load in jobs:
        try:
            layout = load()
            if size_limits is not None:
                _check_layout_size(layout.classes.shape[-2:], *size_limits)
        except TerrasynthError as error:
            if not skip_bad:
                fix = "fix or remove it, or pass --skip-bad to skip bad layouts"
                raise InputError(where, _problem(error), fix) from None
            skipped.append((where, _problem(error)))
            continue
        classes = layout.classes.to(torch.uint8) if len(class_table) <= 256 else layout.classes
        entries.append(LayoutEntry(layout_id, where, dataclasses.replace(layout, classes=classes), prompt))
    if not entries:
        raise InputError(source, f"none of the {len(jobs)} layouts could be read", "see skipped.csv")
    return entries, skipped


def _check_layout_size(shape, minimum: int, max_pixels: int, needs: str) -> None:
    height, width = (int(v) for v in shape)
    if min(height, width) < minimum:
        raise InputError(None, f"{width}×{height} is below the {minimum} px minimum side ({needs})")
    if height * width > max_pixels:
        raise InputError(None, f"{width}×{height} = {height * width:,} pixels is over --max-pixels {max_pixels:,}")


def _problem(error: TerrasynthError) -> str:
    return getattr(error, "problem", None) or str(error)


def _loader(path: Path, table: ClassTable, size: int, class_property: str, class_map: dict | None) -> Callable:
    return lambda: load_layout(path, table, class_property=class_property, class_map=class_map, size=size)


def _folder_jobs(folder: Path, table, size, class_property, class_map) -> list:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in LAYOUT_SUFFIXES
        and p.name != "classes.json"
        and not p.name.startswith(".")
    )
    return [(p.stem, str(p), None, _loader(p, table, size, class_property, class_map)) for p in files]


def _csv_jobs(path: Path, table, size, class_property, class_map) -> list:
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"cannot read CSV ({error})") from None
    if not rows or "layout" not in rows[0]:
        raise InputError(path, "no 'layout' column", "a header row 'layout,prompt', then one row per layout")
    stems = [Path(row["layout"] or "").stem for row in rows]
    jobs = []
    for number, (row, stem) in enumerate(zip(rows, stems), start=2):  # row 1 is the header
        layout_path = (path.parent / (row["layout"] or "")).resolve() if row["layout"] else path
        layout_id = stem if stems.count(stem) == 1 else f"{stem}_row{number}"
        loader = _loader(layout_path, table, size, class_property, class_map)
        if not row["layout"]:
            loader = _refuse(path, f"row {number} has no layout")
        jobs.append((layout_id, str(layout_path), (row.get("prompt") or "").strip() or None, loader))
    return jobs


def _refuse(path: Path, problem: str) -> Callable:
    def load():
        raise InputError(path, problem)

    return load


def _paired_jobs(root: Path, split: str, table: ClassTable) -> list:
    from ..data.paired_tiles import PairedTiles

    data = PairedTiles(root, split, class_table=table)

    def loader(mask_path: Path, where: str) -> Callable:
        def load():
            return Layout(read_mask(mask_path, len(table)), table, read_georeference(mask_path), where)

        return load

    return [
        (sample_id.replace("/", "_"), f"{root}:{sample_id}", None, loader(mask, f"{root}:{sample_id}"))
        for sample_id, (_, mask) in zip(data.ids, data.files)
    ]


def _check_unique_ids(source: Path, ids: list[str]) -> None:
    seen = set()
    for layout_id in ids:
        if layout_id in seen:
            raise InputError(source, f"two layouts share the name {layout_id!r}", "give each layout its own file stem")
        seen.add(layout_id)


def read_class_swap(path: str | Path, table: ClassTable) -> torch.Tensor:
    """A ``{"from class": "to class"}`` JSON file as a lookup table of class ids."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise InputError(path, "a class swap must be a JSON object of class names", 'e.g. {"woodland": "water"}')
    lookup = torch.arange(len(table), dtype=torch.long)
    for source, target in data.items():
        try:
            lookup[table.index(str(source))] = table.index(str(target))
        except KeyError as error:
            raise InputError(path, str(error.args[0])) from None
    return lookup


# 2. Planning -------------------------------------------------------------------------------------------------------


def augmentations(augment: tuple[str, ...] | list[str], class_swap: torch.Tensor | None) -> list[str]:
    """The augmentation names: "" (as given), then hflip, vflip (``flip``), rot90, rot180, rot270 (``rot90``),
    swap (a class swap)."""
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise InputError(None, f"unknown --augment {unknown[0]!r}", f"choose from {', '.join(AUGMENTATIONS)}")
    names = [""]
    if "flip" in augment:
        names += ["hflip", "vflip"]
    if "rot90" in augment:
        names += ["rot90", "rot180", "rot270"]
    if class_swap is not None:
        names.append("swap")
    return names


def augment_layout(layout: Layout, name: str, class_swap: torch.Tensor | None = None) -> Layout:
    """The layout flipped, rotated or class-swapped. A changed geometry drops the georeference: the new layout is
    no longer on the source's grid."""
    classes = layout.classes
    if name == "":
        return layout
    if name == "hflip":
        classes = classes.flip(-1)
    elif name == "vflip":
        classes = classes.flip(-2)
    elif name.startswith("rot"):
        classes = torch.rot90(classes, int(name[3:]) // 90, dims=(-2, -1))
    elif name == "swap":
        classes = class_swap[classes.long()].to(classes.dtype)
        return dataclasses.replace(layout, classes=classes)
    else:
        raise ValueError(f"unknown augmentation {name!r}")
    return dataclasses.replace(layout, classes=classes.contiguous(), georeference=None)


def plan_items(
    entries: list[LayoutEntry],
    per_layout: int,
    seed: int,
    prompt: str | None = None,
    augment: tuple[str, ...] = (),
    class_swap: torch.Tensor | None = None,
) -> list[SynthesisItem]:
    """Every item, in a fixed order: layout by layout, augmentation by augmentation, k = 0 … per_layout − 1.
    Prompts: ``prompt``, else the layout's own (a CSV row's), else a caption built from the (augmented) layout."""
    if per_layout < 1:
        raise InputError(None, "--per-layout must be at least 1")
    items = []
    for entry in entries:
        for name in augmentations(augment, class_swap):
            layout = augment_layout(entry.layout, name, class_swap)
            key = entry.layout_id + (f"~{name}" if name else "")
            text = prompt or entry.prompt or caption_from_layout(layout.classes.long(), layout.class_table)
            for k in range(per_layout):
                seed_k = derive_seed(seed, key, k)
                items.append(
                    SynthesisItem(f"{key}-{k:03d}", entry.layout_id, name, k, entry.source, layout, text, seed_k)
                )
    return items


# 3.–4. Sampling and writing ------------------------------------------------------------------------------------------


def image_path(out_dir: Path, item: SynthesisItem) -> Path:
    return out_dir / "images" / f"{item.id}{'.tif' if item.layout.georeference else '.png'}"


def mask_path(out_dir: Path, item: SynthesisItem) -> Path:
    return out_dir / "masks" / f"{item.id}{'.tif' if item.layout.georeference else '.png'}"


def write_mask(path: Path, layout: Layout) -> None:
    """The class-index mask: a palette PNG (indices, shown in the class colours) or a one-band GeoTIFF on the
    layout's grid; atomically."""
    classes = layout.classes.cpu().numpy().astype(np.uint8)
    if path.suffix in GEOTIFF_SUFFIXES:
        import rasterio

        georeference = layout.georeference
        profile = {
            "driver": "GTiff",
            "width": classes.shape[1],
            "height": classes.shape[0],
            "count": 1,
            "dtype": "uint8",
            "crs": georeference["crs"],
            "transform": rasterio.Affine(*georeference["transform"][:6]),
            "compress": "deflate",
        }
        with atomic_path(path) as tmp, rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(tmp, "w", **profile) as dst:
            dst.write(classes[None])
        return
    from PIL import Image

    image = Image.frombytes("P", (classes.shape[1], classes.shape[0]), np.ascontiguousarray(classes).tobytes())
    palette = [value for colour in layout.class_table.display_colors for value in colour]
    image.putpalette(palette + [0] * (768 - len(palette)))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def synthesize(
    model: LoadedGenerator | str | Path,
    items: list[SynthesisItem],
    out_dir: str | Path,
    sampling: Sampling = Sampling(),
    *,
    batch_size: int = 8,
    watermark: bool = True,
    signer: SignerConfig | None = None,
    progress: bool = True,
    skipped: list[tuple[str, str]] | None = None,
) -> SynthesisResult:
    """Make every item not already in ``out_dir``, split across accelerate's processes (one when not launched by
    ``accelerate launch``); the main process then writes ``classes.json``, ``index.csv`` (``index.parquet``) and
    ``skipped.csv``. ``model``: a model name or folder, or ``load_pipeline``'s result."""
    from accelerate import PartialState

    from .api import load_pipeline

    if batch_size < 1:
        raise InputError(None, "--batch-size must be at least 1")
    out_dir = Path(out_dir)
    if signer is not None:
        load_credentials(signer)
    # Without a GPU, processes launched by accelerate (or torchrun) form a gloo group on CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    started = time.perf_counter()
    loaded = model if isinstance(model, tuple) else load_pipeline(model, sampling.scheduler)
    generator, model_id, model_sha = loaded
    check_sampling(generator, sampling)
    if sampling.strength is not None:
        raise InputError(None, "--strength needs an init image: synthesize draws from noise", "drop --strength")
    _check_classes(generator, items)
    sampling = sampling.resolve(generator)
    if state.device.type != "cpu":
        generator.to(state.device)
    load_seconds = time.perf_counter() - started
    if state.is_main_process:
        remove_leftovers(out_dir)
    state.wait_for_everyone()
    todo = [item for item in items if not image_path(out_dir, item).exists()]
    state.wait_for_everyone()  # every process has listed what exists before any writes
    begin = time.perf_counter()
    written = 0
    with state.split_between_processes(todo) as mine:
        bar = tqdm(total=len(mine), disable=not progress or not state.is_main_process, desc="synthesizing")
        for batch in _batches(mine, batch_size):
            output = generator.sample(
                [item.prompt for item in batch],
                torch.stack([item.layout.classes.long() for item in batch]),
                sampling,
                [item.seed for item in batch],
                batch_size=batch_size,
            )
            for index, item in enumerate(batch):
                _write_item(out_dir, item, output, index, loaded, sampling, watermark, signer)
            written += len(batch)
            bar.update(len(batch))
        bar.close()
    total = _sum_over_processes(state, written)
    state.wait_for_everyone()
    sample_seconds = time.perf_counter() - begin
    if state.is_main_process:
        write_index(out_dir, items, items[0].layout.class_table, skipped or [])
    state.wait_for_everyone()
    return SynthesisResult(
        out_dir=out_dir,
        planned=len(items),
        written=total,
        skipped=list(skipped or []),
        load_seconds=load_seconds,
        sample_seconds=sample_seconds,
        processes=state.num_processes,
        is_main_process=state.is_main_process,
    )


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Remove the hidden temporary files (and signing folders) a killed run left in ``images/`` and ``masks/``:
    atomic writes stage there, so a file under its own name is always whole."""
    removed = []
    for folder in (out_dir / "images", out_dir / "masks"):
        for path in folder.glob(".*") if folder.is_dir() else ():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d partial files a killed run left in %s", len(removed), out_dir)
    return removed


def _check_classes(generator, items: list[SynthesisItem]) -> None:
    model_table = generator.layout_classes
    if model_table is None:
        raise InputError(None, f"{generator.name} takes no layout", "synthesize needs a layout-conditioned model")
    table = items[0].layout.class_table
    if table.names != model_table.names:
        raise InputError(None, f"the layouts' classes {table.names} differ from the model's {model_table.names}")


def _batches(items: list[SynthesisItem], batch_size: int):
    """Batches of items whose layouts have one size, in plan order within each size."""
    by_size: dict[tuple[int, int], list[SynthesisItem]] = {}
    for item in items:
        by_size.setdefault(tuple(item.layout.classes.shape), []).append(item)
    for group in by_size.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def _write_item(out_dir, item, output, index, loaded, sampling, watermark, signer) -> None:
    """The mask, then the image (its existence marks the item complete), both atomic."""
    one = GenerationOutput(
        output.images[index : index + 1],
        output.prompts[index : index + 1],
        output.seeds[index : index + 1],
        None if output.mean_prior_draws is None else output.mean_prior_draws[index : index + 1],
    )
    layout = dataclasses.replace(item.layout, classes=item.layout.classes.long(), source=item.source)
    extra = {"synthesize": {"id": item.id, "layout_id": item.layout_id, "augmentation": item.augmentation, "k": item.k}}
    records = provenance_records(one, loaded[1], loaded[2], sampling, layout, extra)
    write_mask(mask_path(out_dir, item), layout)
    images = out_dir / "images"
    write_generated(one.images, records, images, layout=layout, names=[item.id], watermark=watermark, signer=signer)


def _sum_over_processes(state, value: int) -> int:
    if state.num_processes == 1:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], device=state.device)
    dist.all_reduce(tensor)
    return int(tensor.item())


# 5. The index --------------------------------------------------------------------------------------------------------


def write_index(
    out_dir: str | Path, items: list[SynthesisItem], class_table: ClassTable, skipped: list[tuple[str, str]]
) -> Path:
    """``classes.json``, ``index.csv`` (and ``index.parquet`` when pyarrow imports) over the planned items whose
    image exists, read back from the files (their provenance and hashes), and ``skipped.csv`` when layouts were
    skipped. Returns the CSV's path."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "classes.json", class_table.to_dict())
    rows = []
    for item in items:
        image = image_path(out_dir, item)
        if not image.exists():
            continue
        record = read_provenance(image)
        mask = mask_path(out_dir, item)
        rows.append(
            {
                "id": item.id,
                "image": image.relative_to(out_dir).as_posix(),
                "mask": mask.relative_to(out_dir).as_posix(),
                "layout_id": item.layout_id,
                "layout_source": item.source,
                "augmentation": item.augmentation,
                "k": item.k,
                "prompt": record.prompt,
                "seed": record.seed,
                "model": record.model,
                "model_sha256": record.model_sha256,
                "sampler": record.scheduler,
                "steps": record.steps,
                "guidance_scale": record.guidance_scale,
                "width": record.width,
                "height": record.height,
                "image_sha256": file_sha256(image),
                "mask_sha256": file_sha256(mask),
            }
        )
    index = out_dir / "index.csv"
    write_text_atomic(index, _csv_text(INDEX_COLUMNS, rows))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:
        with atomic_path(out_dir / "index.parquet") as tmp:
            pq.write_table(pa.Table.from_pylist(rows), tmp)
    if skipped:
        write_text_atomic(
            out_dir / "skipped.csv", _csv_text(("layout", "problem"), [{"layout": s, "problem": p} for s, p in skipped])
        )
    return index


def _csv_text(columns, rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


__all__ = [
    "LayoutEntry",
    "SynthesisItem",
    "SynthesisResult",
    "augment_layout",
    "derive_seed",
    "input_class_table",
    "plan_items",
    "read_class_swap",
    "read_layouts",
    "synthesize",
    "write_index",
]
