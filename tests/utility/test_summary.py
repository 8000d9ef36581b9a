"""Aggregates of hand-made run records: mean ± std, paired differences, verdicts, tables and plots."""

from __future__ import annotations

import math

import pytest

from terrasynth.files import write_json_atomic
from terrasynth.utility.summary import (
    csv_text,
    markdown_table,
    mean_std,
    paired_differences,
    paired_statistics,
    summarize,
    write_report,
)


def _record(condition, shots, seed, score, ratio=1.0):
    return {
        "task": "classify",
        "learner": "small_cnn",
        "condition": condition,
        "shots": shots,
        "seed": seed,
        "ratio": None if condition == "real" else ratio,
        "score": score,
        "metric": "accuracy",
        "real_per_class": 5.0 if shots == 5 else 40.0,
        "synthetic_images": 0 if condition == "real" else 10,
        "run_id": f"{condition}-{shots}-{seed}",
    }


RECORDS = (
    [_record("real", 5, s, v) for s, v in enumerate([0.50, 0.52, 0.48])]
    + [_record("real+synthetic", 5, s, v) for s, v in enumerate([0.60, 0.61, 0.59])]  # a clear gain
    + [_record("real", "all", s, v) for s, v in enumerate([0.80, 0.82, 0.81])]
    + [_record("real+synthetic", "all", s, v) for s, v in enumerate([0.85, 0.75, 0.83])]  # noise
)


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)


def test_cells_have_mean_and_std_in_points():
    rows = {(r["condition"], r["shots"]): r for r in summarize(RECORDS)}
    assert rows[("real", 5)]["mean"] == pytest.approx(50.0) and rows[("real", 5)]["std"] == pytest.approx(2.0)
    assert rows[("real+synthetic", 5)]["n"] == 3 and rows[("real+synthetic", 5)]["mean"] == pytest.approx(60.0)
    assert [r["shots"] for r in summarize(RECORDS)][-1] == "all"


def test_paired_difference_and_verdicts():
    from scipy import stats

    rows = {r["shots"]: r for r in paired_differences(RECORDS)}
    gain, noise = rows[5], rows["all"]
    assert gain["mean"] == pytest.approx(10.0) and gain["verdict"] == "gain" and gain["ci_low"] > 0
    assert noise["verdict"] == "within noise" and noise["ci_low"] < 0 < noise["ci_high"]
    expected = stats.ttest_rel([85, 75, 83], [80, 82, 81]).pvalue
    assert noise["p_value"] == pytest.approx(expected)
    loss = paired_statistics([-5.0, -6.0, -4.0])
    assert loss["verdict"] == "loss" and loss["ci_high"] < 0
    assert paired_statistics([0.0, 0.0, 0.0])["verdict"] == "within noise"
    assert paired_statistics([3.0])["verdict"] == "too few seeds to tell"
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) × std / sqrt(n)
    assert paired_statistics([1.0, 2.0, 3.0])["ci_high"] == pytest.approx(2.0 + half)


def test_tables_and_plot(tmp_path):
    summary, differences = summarize(RECORDS), paired_differences(RECORDS)
    table = markdown_table(summary, differences)
    assert "50.0 ± 2.0 (n=3)" in table and "+10.0" in table and "within noise" in table and "all (40)" in table
    lines = csv_text(summary, differences).splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("task,learner,condition")
    for record in RECORDS:
        write_json_atomic(tmp_path / "runs" / f"{record['run_id']}.json", record)
    report = write_report(tmp_path, "test")
    assert report["runs"] == len(RECORDS)
    assert report["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "summary.md").read_text().startswith("# test")
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "summary.json").is_file()
