"""Does synthetic imagery help? Controlled downstream experiments, one JSON per run.

A study is a grid of cells — condition × real examples per class ("shots") × learner × synthetic ratio × seed —
each trained with :mod:`terrasynth.train.supervised` and scored on the *real* test split:

- ``real``: the few-shot real subset alone;
- ``real+synthetic``: the same subset plus ``ratio`` × as many synthetic images (per class, or per pair);
- ``synthetic``: the synthetic images of the same cell alone (classification);
- ``bridged``: trained on the synthetic images first, then fine-tuned on the real subset (Li et al. 2024,
  "Is Synthetic Image Useful for Transfer Learning?").

Few-shot subsets are drawn per seed from one seeded permutation per class, so the 5-shot subset is the start of
the 10-shot one (curves over shots compare like with like), and every condition of a (shots, seed) pair sees the
same real images: differences against ``real`` are paired. Runs are written atomically under
``OUT/runs/``; a rerun skips a run whose JSON exists with the same settings, so a killed grid resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import config_to_dict
from ..errors import InputError
from ..files import atomic_path, read_json, write_json_atomic
from ..generate.schedulers import DEFAULT_SCHEDULER

log = logging.getLogger(__name__)

CONDITIONS = ("real", "real+synthetic", "synthetic", "bridged")
LEARNERS = ("effnet", "small_cnn")
ALL = "all"

# Seconds per training step at 128 px, batch 16, on 2 shared CPU cores (measured on the project's machine);
# used only to print an estimate before a grid runs. Cost scales with pixels × batch.
STEP_SECONDS_128 = {"effnet": 0.55, "small_cnn": 0.35, "segmenter": 0.9}
EVAL_SECONDS_PER_IMAGE_128 = {"effnet": 0.012, "small_cnn": 0.006, "segmenter": 0.03}


def _check_shots(shots) -> None:
    if not shots:
        raise ValueError("shots must name at least one count")
    for value in shots:
        if value != ALL and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"shots must be positive integers or 'all', got {value!r}")


def _check_common(config) -> None:
    _check_shots(config.shots)
    if config.seeds < 1:
        raise ValueError("seeds must be at least 1")
    if not config.ratios or any(r <= 0 for r in config.ratios):
        raise ValueError("ratios must be positive numbers")
    unknown = sorted(set(config.conditions) - set(CONDITIONS))
    if unknown or not config.conditions:
        raise ValueError(f"conditions must be among {CONDITIONS}, got {config.conditions}")
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError("steps and batch_size must be positive")
    if config.size < 8:
        raise ValueError("size must be at least 8 pixels")
    if config.eval_split not in ("val", "test"):
        raise ValueError(f"eval_split must be 'val' or 'test', got {config.eval_split!r}")


@dataclass(frozen=True)
class ClassificationStudyConfig:
    """Scene classification: real / real + synthetic / synthetic / bridged, per learner."""

    shots: tuple = (5, 10, 25, 50, ALL)
    seeds: int = 3
    learners: tuple[str, ...] = LEARNERS
    conditions: tuple[str, ...] = CONDITIONS
    ratios: tuple[float, ...] = (1.0,)
    steps: int = 300  # training steps per run (bridged: this many on synthetic, then this many on real)
    batch_size: int = 16
    learning_rate: float = 1e-3
    size: int = 128  # images are resized to size × size in memory
    eval_split: str = "test"  # real split the runs are scored on ("val" while tuning, "test" for figures)
    max_eval_per_class: int | None = None  # cap the scored images per class (None: the whole split)
    max_synthetic_per_class: int = 200  # cap of the generated pool per class
    generation_size: int = 256  # pixels of generated images (the real tiles' size)
    generation_steps: int = 20
    guidance_scale: float = 2.0
    scheduler: str = DEFAULT_SCHEDULER

    def __post_init__(self):
        _check_common(self)
        unknown = sorted(set(self.learners) - set(LEARNERS))
        if unknown or not self.learners:
            raise ValueError(f"learners must be among {LEARNERS}, got {self.learners}")

    def synthetic_per_class(self, real_per_class: int) -> int:
        """Size of the generated pool per class: the largest cell's need, capped."""
        finite = [s for s in self.shots if s != ALL]
        largest = real_per_class if ALL in self.shots else max(finite)
        need = max(1, math.ceil(max(self.ratios) * min(largest, real_per_class)))
        return min(need, self.max_synthetic_per_class)


@dataclass(frozen=True)
class SegmentationStudyConfig:
    """Land-cover segmentation: real pairs vs real pairs + synthetic images generated from real layouts."""

    shots: tuple = (25, 50, 100, ALL)  # real pairs (the whole training set has one "class" of examples)
    seeds: int = 3
    conditions: tuple[str, ...] = ("real", "real+synthetic")
    ratios: tuple[float, ...] = (1.0,)
    steps: int = 300
    batch_size: int = 8
    learning_rate: float = 1e-3
    size: int = 128  # a multiple of 32 (the segmenter's stride)
    eval_split: str = "test"
    max_eval: int | None = None
    pretrained: bool = True
    generation_steps: int = 20
    guidance_scale: float = 2.0
    scheduler: str = DEFAULT_SCHEDULER

    def __post_init__(self):
        _check_common(self)
        if self.size % 32:
            raise ValueError(f"size must be a multiple of 32 for the segmenter, got {self.size}")

    @property
    def learners(self) -> tuple[str, ...]:
        return ("segmenter",)

    @property
    def images_per_layout(self) -> int:
        return max(1, math.ceil(max(self.ratios)))


@dataclass(frozen=True)
class Cell:
    """One run of a study: what trains on what, with which seed."""

    task: str  # "classify" or "segment"
    learner: str
    condition: str
    shots: int | str
    ratio: float | None  # None for "real" (it has no synthetic data)
    seed: int

    @property
    def run_id(self) -> str:
        shots = f"{self.shots:03d}" if self.shots != ALL else ALL
        ratio = "none" if self.ratio is None else f"{self.ratio:g}"
        condition = self.condition.replace("+", "_plus_")
        return f"{self.task}-{self.learner}-{condition}-ratio{ratio}-shots{shots}-seed{self.seed}"


def plan_cells(config: ClassificationStudyConfig | SegmentationStudyConfig) -> list[Cell]:
    """Every run of the grid, ordered so that cheap, small cells come first (a partial grid is still useful):
    by shots, then seed, learner, condition, ratio. ``real`` runs appear once per (learner, shots, seed)."""
    task = "classify" if isinstance(config, ClassificationStudyConfig) else "segment"
    order = {s: i for i, s in enumerate(sorted(s for s in config.shots if s != ALL))}
    order[ALL] = len(order)
    cells = []
    for shots in sorted(dict.fromkeys(config.shots), key=order.__getitem__):
        for seed in range(config.seeds):
            for learner in config.learners:
                for condition in [c for c in CONDITIONS if c in config.conditions]:
                    ratios = [None] if condition == "real" else list(dict.fromkeys(config.ratios))
                    for ratio in ratios:
                        cells.append(Cell(task, learner, condition, shots, ratio, seed))
    return cells


# subsets --------------------------------------------------------------------------------------------------------


def _permutation(count: int, seed: int, salt: str) -> list[int]:
    key = int(hashlib.sha256(f"{salt}/{seed}".encode()).hexdigest()[:12], 16)
    return torch.randperm(count, generator=torch.Generator().manual_seed(key)).tolist()


def few_shot_subset(labels: Sequence[int], shots: int | str, seed: int) -> list[int]:
    """Indices of ``shots`` examples per class (all of a class if it has fewer), sorted.

    Each class is permuted once per seed and the subset is the permutation's start, so for one seed the
    5-shot subset is inside the 10-shot one; the permutation depends on the class and seed only."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    chosen = []
    for label, members in sorted(by_class.items()):
        order = _permutation(len(members), seed, f"class{label}")
        take = len(members) if shots == ALL else min(int(shots), len(members))
        chosen += [members[i] for i in order[:take]]
    return sorted(chosen)


def nested_take(count: int, take: int, seed: int, salt: str = "synthetic") -> list[int]:
    """The first ``take`` of a seeded permutation of ``range(count)``: nested over ``take`` for one seed."""
    return sorted(_permutation(count, seed, salt)[: min(take, count)])


def synthetic_count(real_count: int, ratio: float) -> int:
    return max(1, round(ratio * real_count))


# tensors --------------------------------------------------------------------------------------------------------


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """N×3×H×W in [0, 1] → N×3×size×size (antialiased)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def resize_layouts(layouts: torch.Tensor, size: int) -> torch.Tensor:
    if layouts.shape[-2:] == (size, size):
        return layouts
    return F.interpolate(layouts[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def load_tensor_cache(path: Path, build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``build()`` once, kept as safetensors at ``path`` (images stored as uint8), then read back."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return load_file(path)
    tensors = build()
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    return tensors


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """A batch of float images in [0, 1] → uint8, same layout (a quarter of the memory; ``to_float`` undoes it).
    For one image to show or save (H×W×3), ``data.grids.to_uint8``."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 → half precision in [0, 1] (half the memory of float32; the trainer casts batches to float)."""
    return images.to(torch.float16) / 255


def read_samples(dataset, size: int, key: str | None, progress: bool = False) -> dict[str, torch.Tensor]:
    """All samples of a dataset as uint8 images at ``size`` plus labels (``key="label"``) or layouts."""
    from tqdm.auto import tqdm

    images, targets = [], []
    for index in tqdm(range(len(dataset)), disable=not progress, desc=f"reading {getattr(dataset, 'root', '')}"):
        sample = dataset[index]
        images.append(quantize_images(resize_images(sample["image"][None].float(), size))[0])
        if key == "label":
            targets.append(torch.tensor(sample["label"]))
        elif key == "layout":
            targets.append(resize_layouts(sample["layout"][None], size)[0].to(torch.uint8))
    out = {"images": torch.stack(images)}
    if targets:
        out["targets"] = torch.stack(targets)
    return out


# runs -----------------------------------------------------------------------------------------------------------


def run_path(out_dir: str | Path, cell: Cell) -> Path:
    return Path(out_dir) / "runs" / f"{cell.run_id}.json"


def finished(path: Path, settings: dict) -> bool:
    """A run file exists and was made with the same settings (a changed grid setting reruns it)."""
    if not path.is_file():
        return False
    try:
        data = read_json(path)
    except InputError:
        return False
    return data.get("settings") == settings


def run_settings(config, cell: Cell, data_fingerprint: str) -> dict:
    """What a run's result depends on: the cell, the training settings and the data."""
    keys = (
        "steps",
        "batch_size",
        "learning_rate",
        "size",
        "eval_split",
        "pretrained",
        "max_eval",
        "max_eval_per_class",
        "max_synthetic_per_class",
    )
    study = config_to_dict(config)
    return {
        "cell": dataclasses.asdict(cell),
        "train": {k: study[k] for k in keys if k in study},
        "data": data_fingerprint,
    }


def _train_config(config, seed: int, steps: int | None = None):
    from ..train.supervised import SupervisedTrainConfig

    return SupervisedTrainConfig(
        steps=steps or config.steps, batch_size=config.batch_size, learning_rate=config.learning_rate, seed=seed
    )


def _concat(*parts: torch.Tensor) -> torch.Tensor:
    parts = [p for p in parts if len(p)]
    return torch.cat(parts)


@dataclass
class ClassificationData:
    """Real train / eval sets and the synthetic pool, as tensors (images uint8 N×3×S×S, labels long)."""

    class_names: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    synthetic_images: torch.Tensor
    synthetic_labels: torch.Tensor
    fingerprint: str

    def per_class(self, labels: torch.Tensor) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for index, label in enumerate(labels.tolist()):
            groups.setdefault(label, []).append(index)
        return groups


def classification_training_set(data: ClassificationData, cell: Cell) -> dict:
    """The real and synthetic indices a classification cell trains on."""
    real = few_shot_subset(data.train_labels.tolist(), cell.shots, cell.seed)
    synthetic: list[int] = []
    if cell.condition != "real":
        real_groups = data.per_class(data.train_labels[real])
        for label, members in sorted(data.per_class(data.synthetic_labels).items()):
            take = synthetic_count(len(real_groups.get(label, [])), cell.ratio)
            synthetic += [members[i] for i in nested_take(len(members), take, cell.seed, f"synthetic{label}")]
    return {"real": real, "synthetic": sorted(synthetic)}


def run_classification_cell(config: ClassificationStudyConfig, data: ClassificationData, cell: Cell) -> dict:
    """Train one classifier of the grid and score it on the real evaluation split."""
    from ..models.recognition import Classifier, ClassifierConfig
    from ..train.supervised import classification_accuracy, confusion_matrix, train_classifier

    chosen = classification_training_set(data, cell)
    real_x, real_y = data.train_images[chosen["real"]], data.train_labels[chosen["real"]]
    syn_x, syn_y = data.synthetic_images[chosen["synthetic"]], data.synthetic_labels[chosen["synthetic"]]
    if cell.condition != "real" and not len(syn_x):
        raise InputError(None, "no synthetic images for this cell", "generate or point --generator at some")
    torch.manual_seed(cell.seed)
    model = Classifier(ClassifierConfig(len(data.class_names), tuple(data.class_names), backbone=cell.learner))
    losses: list[float] = []
    started = time.perf_counter()
    if cell.condition == "real":
        losses = train_classifier(model, to_float(real_x), real_y, _train_config(config, cell.seed))
    elif cell.condition == "synthetic":
        losses = train_classifier(model, to_float(syn_x), syn_y, _train_config(config, cell.seed))
    elif cell.condition == "real+synthetic":
        losses = train_classifier(
            model, to_float(_concat(real_x, syn_x)), _concat(real_y, syn_y), _train_config(config, cell.seed)
        )
    else:  # bridged: synthetic first, then the real subset
        losses = train_classifier(model, to_float(syn_x), syn_y, _train_config(config, cell.seed))
        losses += train_classifier(model, to_float(real_x), real_y, _train_config(config, cell.seed + 7919))
    train_seconds = time.perf_counter() - started
    eval_x = to_float(data.eval_images).float()
    accuracy = classification_accuracy(model, eval_x, data.eval_labels)
    with torch.no_grad():
        predicted = torch.cat([model(eval_x[i : i + 64]).argmax(1) for i in range(0, len(eval_x), 64)])
    matrix = confusion_matrix(predicted, data.eval_labels, len(data.class_names))
    per_class = (matrix.diag().double() / matrix.sum(1).double().clamp(min=1)).tolist()
    return {
        "metric": "accuracy",
        "score": accuracy,
        "accuracy_per_class": dict(zip(data.class_names, per_class)),
        "real_images": len(chosen["real"]),
        "synthetic_images": len(chosen["synthetic"]),
        "real_per_class": len(chosen["real"]) / len(data.class_names),
        "eval_images": len(eval_x),
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "train_seconds": train_seconds,
    }


@dataclass
class SegmentationData:
    """Real train / eval pairs and the synthetic images of the training layouts (``synthetic[k]`` holds image
    k of every training layout, NaN-free: a missing image is marked in ``synthetic_present``)."""

    class_names: list[str]
    train_ids: list[str]
    train_images: torch.Tensor
    train_layouts: torch.Tensor
    eval_images: torch.Tensor
    eval_layouts: torch.Tensor
    synthetic_images: torch.Tensor  # K×N×3×S×S (uint8), image k generated from training layout n
    synthetic_present: torch.Tensor  # K×N bool
    fingerprint: str


def segmentation_training_set(data: SegmentationData, cell: Cell) -> dict:
    """Real pair indices, and (k, n) synthetic picks: image k of layout n, for layouts in the real subset only
    (k-major, so ratio 1 takes image 0 of every layout and 0.5 half of them)."""
    real = nested_take(
        len(data.train_ids), len(data.train_ids) if cell.shots == ALL else int(cell.shots), cell.seed, "pairs"
    )
    picks: list[tuple[int, int]] = []
    if cell.condition != "real":
        take = synthetic_count(len(real), cell.ratio)
        order = [real[i] for i in _permutation(len(real), cell.seed, "synthetic-layouts")]
        candidates = [
            (k, n) for k in range(data.synthetic_images.shape[0]) for n in order if bool(data.synthetic_present[k, n])
        ]
        picks = candidates[:take]
    return {"real": real, "synthetic": picks}


def run_segmentation_cell(config: SegmentationStudyConfig, data: SegmentationData, cell: Cell) -> dict:
    from ..models.recognition import Segmenter, SegmenterConfig
    from ..train.supervised import segmentation_scores, train_segmenter

    chosen = segmentation_training_set(data, cell)
    real_x, real_y = data.train_images[chosen["real"]], data.train_layouts[chosen["real"]]
    if chosen["synthetic"]:
        ks, ns = zip(*chosen["synthetic"])
        syn_x = data.synthetic_images[list(ks), list(ns)]
        syn_y = data.train_layouts[list(ns)]  # the layouts they were generated from: exact labels
    else:
        syn_x, syn_y = real_x[:0], real_y[:0]
    if cell.condition != "real" and not len(syn_x):
        raise InputError(None, "no synthetic images for this cell", "generate or point --generator at some")
    torch.manual_seed(cell.seed)
    model = Segmenter(SegmenterConfig(len(data.class_names), tuple(data.class_names), pretrained=config.pretrained))
    started = time.perf_counter()
    train_config = _train_config(config, cell.seed)
    if cell.condition == "real":
        losses = train_segmenter(model, to_float(real_x), real_y.long(), train_config)
    elif cell.condition == "synthetic":
        losses = train_segmenter(model, to_float(syn_x), syn_y.long(), train_config)
    elif cell.condition == "real+synthetic":
        losses = train_segmenter(model, to_float(_concat(real_x, syn_x)), _concat(real_y, syn_y).long(), train_config)
    else:
        losses = train_segmenter(model, to_float(syn_x), syn_y.long(), train_config)
        losses += train_segmenter(model, to_float(real_x), real_y.long(), _train_config(config, cell.seed + 7919))
    train_seconds = time.perf_counter() - started
    predicted = model.predict(to_float(data.eval_images).float(), batch_size=16)
    scores = segmentation_scores(predicted, data.eval_layouts.long(), len(data.class_names))
    return {
        "metric": "miou",
        "score": scores["miou"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "iou_per_class": dict(zip(data.class_names, scores["iou_per_class"])),
        "real_images": len(chosen["real"]),
        "synthetic_images": len(chosen["synthetic"]),
        "real_per_class": len(chosen["real"]),
        "eval_images": len(data.eval_images),
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "train_seconds": train_seconds,
    }


def estimate_seconds(config, cells: Sequence[Cell], eval_images: int) -> float:
    """Rough wall time of ``cells`` (training + scoring) on 2 CPU cores, from :data:`STEP_SECONDS_128`."""
    scale = (config.size / 128) ** 2 * config.batch_size / 16
    total = 0.0
    for cell in cells:
        steps = config.steps * (2 if cell.condition == "bridged" else 1)
        total += steps * STEP_SECONDS_128[cell.learner] * scale
        total += eval_images * EVAL_SECONDS_PER_IMAGE_128[cell.learner] * (config.size / 128) ** 2 + 3
    return total


def run_grid(
    config: ClassificationStudyConfig | SegmentationStudyConfig,
    data: ClassificationData | SegmentationData,
    out_dir: str | Path,
    cells: Sequence[Cell] | None = None,
    on_run: Callable[[Cell, dict, bool], None] | None = None,
) -> list[dict]:
    """Run every cell not already finished; returns all run records (finished earlier or now).

    ``on_run(cell, record, skipped)`` is called after each cell (the CLI prints progress with it)."""
    cells = plan_cells(config) if cells is None else cells
    runner = run_classification_cell if isinstance(config, ClassificationStudyConfig) else run_segmentation_cell
    records = []
    for cell in cells:
        path = run_path(out_dir, cell)
        settings = run_settings(config, cell, data.fingerprint)
        skipped = finished(path, settings)
        if skipped:
            record = read_json(path)
        else:
            log.info("running %s", cell.run_id)
            result = runner(config, data, cell)
            record = {"run_id": cell.run_id, **dataclasses.asdict(cell), **result, "settings": settings}
            write_json_atomic(path, record)
        records.append(record)
        if on_run is not None:
            on_run(cell, record, skipped)
    return records


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
