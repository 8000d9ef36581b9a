"""The grid planner, few-shot subsets and resumable runs of the utility study."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from terrasynth.files import read_json
from terrasynth.utility import experiments
from terrasynth.utility.experiments import (
    ClassificationData,
    ClassificationStudyConfig,
    SegmentationData,
    SegmentationStudyConfig,
    classification_training_set,
    few_shot_subset,
    nested_take,
    plan_cells,
    run_grid,
    run_path,
    segmentation_training_set,
)


def test_planner_expands_the_grid():
    config = ClassificationStudyConfig(shots=(10, 5), seeds=3, ratios=(1.0, 4.0))
    cells = plan_cells(config)
    real = [c for c in cells if c.condition == "real"]
    assert len(real) == 2 * 3 * 2 and all(c.ratio is None for c in real)  # shots × seeds × learners, once
    assert len(cells) == len(real) + 3 * 2 * 2 * 3 * 2  # + conditions × ratios × shots × seeds × learners
    assert len({c.run_id for c in cells}) == len(cells)
    assert [c.shots for c in cells][0] == 5 and cells[-1].shots == 10  # small cells first
    assert {c.condition for c in cells} == {"real", "real+synthetic", "synthetic", "bridged"}
    segment = plan_cells(SegmentationStudyConfig(shots=(25, "all"), seeds=3))
    assert {(c.task, c.learner) for c in segment} == {("segment", "segmenter")}
    assert len(segment) == 2 * 3 * 2 and segment[-1].shots == "all"


def test_configs_reject_bad_values():
    with pytest.raises(ValueError):
        ClassificationStudyConfig(shots=(0,))
    with pytest.raises(ValueError):
        ClassificationStudyConfig(learners=("resnet",))
    with pytest.raises(ValueError):
        ClassificationStudyConfig(conditions=("fake",))
    with pytest.raises(ValueError):
        SegmentationStudyConfig(size=100)
    with pytest.raises(ValueError):
        SegmentationStudyConfig(ratios=(0.0,))


def test_few_shot_subsets_are_nested_balanced_and_seeded():
    labels = [i % 3 for i in range(60)] + [3, 3]  # 20 per class, and a class with only two examples
    five, ten = few_shot_subset(labels, 5, seed=0), few_shot_subset(labels, 10, seed=0)
    assert set(five) < set(ten)
    assert [sum(labels[i] == c for i in five) for c in range(4)] == [5, 5, 5, 2]
    assert [sum(labels[i] == c for i in ten) for c in range(4)] == [10, 10, 10, 2]
    assert five == few_shot_subset(labels, 5, seed=0)
    assert five != few_shot_subset(labels, 5, seed=1)
    assert few_shot_subset(labels, "all", seed=2) == list(range(62))
    assert set(nested_take(50, 10, 3)) < set(nested_take(50, 20, 3))


def _classification_data(per_class: int = 6, size: int = 16) -> ClassificationData:
    generator = torch.Generator().manual_seed(0)

    def images(n):
        return torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)

    labels = torch.arange(2).repeat_interleave(per_class)
    return ClassificationData(
        ["a", "b"],
        images(2 * per_class),
        labels,
        images(4),
        torch.tensor([0, 0, 1, 1]),
        images(2 * per_class),
        labels.clone(),
        "fake",
    )


def test_synthetic_share_follows_the_ratio():
    data = _classification_data(per_class=6)
    cell = experiments.Cell("classify", "small_cnn", "real+synthetic", 2, 1.0, 0)
    chosen = classification_training_set(data, cell)
    assert len(chosen["real"]) == 4 and len(chosen["synthetic"]) == 4
    half = classification_training_set(data, dataclasses.replace(cell, ratio=0.5))
    assert len(half["synthetic"]) == 2 and set(half["synthetic"]) < set(chosen["synthetic"])
    more = classification_training_set(data, dataclasses.replace(cell, ratio=4.0))
    assert len(more["synthetic"]) == 12  # capped by the pool
    assert classification_training_set(data, dataclasses.replace(cell, condition="real"))["synthetic"] == []


def test_segmentation_synthetic_comes_from_the_subset_layouts():
    n = 10
    present = torch.ones(2, n, dtype=torch.bool)
    present[1, 3] = False
    data = SegmentationData(
        ["x", "y"],
        [str(i) for i in range(n)],
        torch.zeros(n, 3, 8, 8, dtype=torch.uint8),
        torch.zeros(n, 8, 8, dtype=torch.long),
        torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
        torch.zeros(2, 8, 8, dtype=torch.long),
        torch.zeros(2, n, 3, 8, 8, dtype=torch.uint8),
        present,
        "fake",
    )
    cell = experiments.Cell("segment", "segmenter", "real+synthetic", 4, 1.0, 0)
    chosen = segmentation_training_set(data, cell)
    assert len(chosen["real"]) == 4 and len(chosen["synthetic"]) == 4
    assert {n for _, n in chosen["synthetic"]} == set(chosen["real"]) and {k for k, _ in chosen["synthetic"]} == {0}
    double = segmentation_training_set(data, dataclasses.replace(cell, ratio=2.0))
    assert {n for _, n in double["synthetic"]} == set(chosen["real"])
    assert len(double["synthetic"]) == 8 - (3 in chosen["real"])  # missing images are skipped
    assert len(segmentation_training_set(data, dataclasses.replace(cell, ratio=0.5))["synthetic"]) == 2


def test_grid_resumes_without_redoing_finished_runs(tmp_path, monkeypatch):
    config = ClassificationStudyConfig(
        shots=(2,),
        seeds=2,
        learners=("small_cnn",),
        conditions=("real", "real+synthetic"),
        steps=2,
        batch_size=4,
        size=16,
    )
    data = _classification_data()
    cells = plan_cells(config)
    calls = []
    real_runner = experiments.run_classification_cell

    def counting(config, data, cell):
        calls.append(cell.run_id)
        return real_runner(config, data, cell)

    monkeypatch.setattr(experiments, "run_classification_cell", counting)
    run_grid(config, data, tmp_path, cells[:2])  # a grid "killed" after two runs
    assert len(calls) == 2
    first = run_path(tmp_path, cells[0])
    before = first.stat().st_mtime_ns
    records = run_grid(config, data, tmp_path)
    assert len(calls) == len(cells) and calls[2:] == [c.run_id for c in cells[2:]]
    assert first.stat().st_mtime_ns == before and len(records) == len(cells)
    record = read_json(first)
    assert 0 <= record["score"] <= 1 and record["real_images"] == 4 and record["synthetic_images"] == 0
    run_grid(config, data, tmp_path)
    assert len(calls) == len(cells)  # all finished: nothing redone
    run_grid(dataclasses.replace(config, steps=3), data, tmp_path, cells[:1])  # other settings: redone
    assert len(calls) == len(cells) + 1
