"""The data of a utility study as tensors: real train / evaluation splits and the synthetic images.

``--generator`` is either a generator (a shipped model name or a model folder: images are generated here and
cached under ``OUT/synthetic``) or a folder of synthetic images made elsewhere — a scene-folder tree
(``<class>/<image>``) for classification, ``<layout id>-000.png`` … files for segmentation — so any generator
can be plugged in. Decoded, resized tensors are cached under ``OUT/cache`` (safetensors, uint8), so a rerun of a
grid does not decode thousands of images again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data.images import is_image_file, read_image
from ..data.paired_tiles import PairedTiles
from ..data.scene_folder import SceneFolder
from ..data.synthetic_tiles import is_synthetic_dataset
from ..errors import InputError
from .experiments import (
    ALL,
    ClassificationData,
    ClassificationStudyConfig,
    SegmentationData,
    SegmentationStudyConfig,
    fingerprint,
    load_tensor_cache,
    nested_take,
    quantize_images,
    read_samples,
    resize_images,
)

log = logging.getLogger(__name__)


def generator_kind(generator: str | Path, task: str) -> str:
    """``"folder"`` for a folder of synthetic images, ``"model"`` for anything to load as a generator."""
    path = Path(str(generator)).expanduser()
    if not path.is_dir():
        return "model"  # a shipped name; load_pipeline names a missing folder
    if is_synthetic_dataset(path):  # terrasynth synthesize's output: its images/ are named <layout id>-000.png
        if task == "segment":
            return "synthesized"
        raise InputError(path, "a synthesized layout dataset serves the segmentation study", "use --task segment")
    if any(path.glob("*.json")) or any(path.glob("*.safetensors")) or any(path.glob("*/*.safetensors")):
        return "model"  # a terrasynth or diffusers model folder, or fine-tuned weights
    if task == "segment":
        if any(is_image_file(p) for p in path.iterdir()):
            return "folder"
    elif any(sub.is_dir() and any(is_image_file(p) for p in sub.iterdir()) for sub in path.iterdir()):
        return "folder"
    raise InputError(
        path,
        "neither a model folder nor a folder of synthetic images",
        "pass a model folder (config.json + weights), a shipped model name, or "
        + ("<layout id>-000.png images" if task == "segment" else "one sub-folder of images per class"),
    )


def _files_fingerprint(files: list[Path]) -> str:
    return fingerprint([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def _limit_per_class(labels: list[int], cap: int | None) -> list[int]:
    if cap is None:
        return list(range(len(labels)))
    from .experiments import few_shot_subset

    return few_shot_subset(labels, cap, seed=12345)


class _Indexed(torch.utils.data.Dataset):
    """A subset of a dataset that keeps ``ids``, ``root`` and ``class_table`` (what the generators read)."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, list(indices)
        self.root = getattr(dataset, "root", "")
        self.class_table = getattr(dataset, "class_table", None)
        if hasattr(dataset, "ids"):
            self.ids = [dataset.ids[i] for i in self.indices]
        if hasattr(dataset, "files"):
            self.files = [dataset.files[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.indices[index]]


def _cached_samples(
    cache_dir: Path, name: str, dataset, size: int, key: str, files: list[Path], progress: bool
) -> dict[str, torch.Tensor]:
    tag = fingerprint(_files_fingerprint(files), size, key)
    return load_tensor_cache(
        cache_dir / f"{name}-{size}px-{tag}.safetensors", lambda: read_samples(dataset, size, key, progress)
    )


def load_classification_data(
    real: str | Path,
    generator: str | Path,
    out_dir: str | Path,
    config: ClassificationStudyConfig,
    progress: bool = False,
    pipeline_bundle: tuple | None = None,
) -> ClassificationData:
    """Real ``train`` and ``config.eval_split`` splits of a scene folder, and a synthetic pool per class."""
    out_dir = Path(out_dir)
    cache = out_dir / "cache"
    train = SceneFolder(real, "train")
    evaluation = SceneFolder(real, config.eval_split)
    eval_keep = _limit_per_class(evaluation.labels, config.max_eval_per_class)
    evaluation_subset = _Indexed(evaluation, eval_keep)
    train_t = _cached_samples(cache, "real-train", train, config.size, "label", [p for p, _ in train.files], progress)
    eval_t = _cached_samples(
        cache,
        f"real-{config.eval_split}",
        evaluation_subset,
        config.size,
        "label",
        [p for p, _ in evaluation_subset.files],
        progress,
    )
    classes = train.classes
    per_class = max(train.labels.count(i) for i in range(len(classes)))
    pool = config.synthetic_per_class(per_class)
    needs_synthetic = any(c != "real" for c in config.conditions)
    if not needs_synthetic:
        syn_images, syn_labels = train_t["images"][:0], train_t["targets"][:0]
    else:
        if generator_kind(generator, "classify") == "folder":
            folder = Path(generator)
        else:
            from ..generate.api import load_pipeline
            from ..generate.batch import generate_for_scene_classes
            from ..generate.sampling import Sampling

            folder = out_dir / "synthetic" / "classify"
            bundle = pipeline_bundle or load_pipeline(generator, config.scheduler)
            generate_for_scene_classes(
                bundle,
                classes,
                folder,
                pool,
                Sampling(config.generation_steps, config.guidance_scale, config.scheduler),
                size=config.generation_size,
                progress=progress,
            )
        synthetic = SceneFolder(folder, "all", classes=classes)
        keep = _limit_per_class(synthetic.labels, config.max_synthetic_per_class)
        synthetic_subset = _Indexed(synthetic, keep)
        syn_t = _cached_samples(
            cache,
            "synthetic-classify",
            synthetic_subset,
            config.size,
            "label",
            [p for p, _ in synthetic_subset.files],
            progress,
        )
        syn_images, syn_labels = syn_t["images"], syn_t["targets"]
    return ClassificationData(
        class_names=classes,
        train_images=train_t["images"],
        train_labels=train_t["targets"].long(),
        eval_images=eval_t["images"],
        eval_labels=eval_t["targets"].long(),
        synthetic_images=syn_images,
        synthetic_labels=syn_labels.long(),
        fingerprint=fingerprint(
            [str(p) for p, _ in train.files],
            [str(p) for p, _ in evaluation_subset.files],
            int(syn_labels.numel()),
            float(syn_images.float().mean()) if len(syn_images) else 0.0,
        ),
    )


def layouts_needing_synthetic(config: SegmentationStudyConfig, count: int) -> list[int]:
    """Indices of the training pairs that some cell of the grid pairs with synthetic images."""
    if not any(c != "real" for c in config.conditions):
        return []
    largest = count if ALL in config.shots else max(int(s) for s in config.shots)
    needed: set[int] = set()
    for seed in range(config.seeds):
        needed.update(nested_take(count, largest, seed, "pairs"))
    return sorted(needed)


def load_segmentation_data(
    real: str | Path,
    generator: str | Path,
    out_dir: str | Path,
    config: SegmentationStudyConfig,
    progress: bool = False,
    pipeline_bundle: tuple | None = None,
) -> SegmentationData:
    """Real ``train`` and evaluation pairs, and the synthetic images generated from the training layouts."""
    out_dir = Path(out_dir)
    cache = out_dir / "cache"
    train = PairedTiles(real, "train")
    evaluation = PairedTiles(real, config.eval_split)
    if config.max_eval is not None:
        evaluation = _Indexed(evaluation, nested_take(len(evaluation), config.max_eval, 12345, "eval"))
    train_t = _cached_samples(
        cache, "real-train-pairs", train, config.size, "layout", [p for pair in train.files for p in pair], progress
    )
    eval_t = _cached_samples(
        cache,
        f"real-{config.eval_split}-pairs",
        evaluation,
        config.size,
        "layout",
        [p for pair in evaluation.files for p in pair],
        progress,
    )
    per_layout = config.images_per_layout
    needed = layouts_needing_synthetic(config, len(train))
    synthetic = torch.zeros((per_layout, len(train), 3, config.size, config.size), dtype=torch.uint8)
    present = torch.zeros((per_layout, len(train)), dtype=torch.bool)
    if needed:
        kind = generator_kind(generator, "segment")
        if kind in ("folder", "synthesized"):
            folder = Path(generator) / "images" if kind == "synthesized" else Path(generator)
        else:
            from ..generate.api import load_pipeline
            from ..generate.batch import generate_for_layouts
            from ..generate.sampling import Sampling

            folder = out_dir / "synthetic" / "segment"
            bundle = pipeline_bundle or load_pipeline(generator, config.scheduler)
            generate_for_layouts(
                bundle,
                _Indexed(train, needed),
                folder,
                Sampling(config.generation_steps, config.guidance_scale, config.scheduler),
                images_per_layout=per_layout,
                progress=progress,
            )
        files = {p.stem: p for p in folder.iterdir() if is_image_file(p)}
        wanted = [
            (k, n, files.get(f"{train.ids[n].replace('/', '_')}-{k:03d}")) for k in range(per_layout) for n in needed
        ]
        found = [(k, n, p) for k, n, p in wanted if p is not None]
        if not found:
            raise InputError(
                folder,
                "no synthetic image for any training layout",
                f"expected files named <layout id>-000.png, e.g. {train.ids[needed[0]]}-000.png",
            )
        missing = len(wanted) - len(found)
        if missing:
            log.warning("%s: %d of %d synthetic images missing; cells use the ones found", folder, missing, len(wanted))
        tag = fingerprint(_files_fingerprint([p for _, _, p in found]), config.size)

        def build():
            images = torch.stack(
                [quantize_images(resize_images(read_image(p)[None], config.size))[0] for _, _, p in found]
            )
            return {"images": images}

        loaded = load_tensor_cache(cache / f"synthetic-segment-{config.size}px-{tag}.safetensors", build)["images"]
        for (k, n, _), image in zip(found, loaded):
            synthetic[k, n] = image
            present[k, n] = True
    return SegmentationData(
        class_names=list(train.class_table.names),
        train_ids=list(train.ids),
        train_images=train_t["images"],
        train_layouts=train_t["targets"].long(),
        eval_images=eval_t["images"],
        eval_layouts=eval_t["targets"].long(),
        synthetic_images=synthetic,
        synthetic_present=present,
        fingerprint=fingerprint(
            list(train.ids),
            list(evaluation.ids),
            int(present.sum()),
            float(synthetic.float().mean()) if needed else 0.0,
        ),
    )
