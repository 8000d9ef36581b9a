"""Downstream utility of synthetic imagery: few-shot grids of real / real + synthetic / synthetic / bridged
training runs, scored on real test data (see :mod:`terrasynth.utility.experiments`)."""

from .experiments import (
    Cell,
    ClassificationStudyConfig,
    SegmentationStudyConfig,
    few_shot_subset,
    plan_cells,
    run_grid,
)
from .study import quick_config, run_study
from .summary import paired_differences, paired_statistics, summarize, write_report

__all__ = [
    "Cell",
    "ClassificationStudyConfig",
    "SegmentationStudyConfig",
    "few_shot_subset",
    "paired_differences",
    "paired_statistics",
    "plan_cells",
    "quick_config",
    "run_grid",
    "run_study",
    "summarize",
    "write_report",
]
