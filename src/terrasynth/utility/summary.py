"""Aggregating a study's runs: mean ± std per cell, paired differences against real-only, tables and plots.

Scores are reported in points (accuracy or mIoU × 100). A difference is paired: each seed's ``real`` run and
the other condition's run saw the same real images, so the difference per seed removes the subset's luck. Its
95 % confidence interval is Student's t over seeds; when it includes 0 the difference is "within noise".
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path

from ..files import atomic_path, read_json, write_text_atomic
from .experiments import ALL, CONDITIONS

CONDITION_LABELS = {
    "real": "real only",
    "real+synthetic": "real + synthetic",
    "synthetic": "synthetic only",
    "bridged": "bridged (synthetic → real)",
}


def load_runs(out_dir: str | Path) -> list[dict]:
    """Every run record under ``out_dir/runs`` (sorted by run id)."""
    return [read_json(p) for p in sorted((Path(out_dir) / "runs").glob("*.json"))]


def shots_key(shots) -> tuple:
    return (1, 0) if shots == ALL else (0, int(shots))


def _ratio_key(ratio) -> float:
    return -1.0 if ratio is None else float(ratio)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def paired_statistics(differences: list[float], confidence: float = 0.95) -> dict:
    """Mean paired difference, its t confidence interval, the paired t-test p-value and a verdict."""
    from scipy import stats

    n = len(differences)
    mean, std = mean_std(differences)
    if n < 2:
        return {
            "n": n,
            "mean": mean,
            "std": std,
            "ci_low": None,
            "ci_high": None,
            "p_value": None,
            "verdict": "too few seeds to tell",
        }
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    if std == 0:
        p_value = 1.0 if mean == 0 else 0.0
    else:
        p_value = float(2 * stats.t.sf(abs(mean) / (std / math.sqrt(n)), n - 1))
    if low <= 0 <= high:
        verdict = "within noise"
    else:
        verdict = "gain" if mean > 0 else "loss"
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high, "p_value": p_value, "verdict": verdict}


def summarize(records: Iterable[dict]) -> list[dict]:
    """One row per (task, learner, condition, ratio, shots): n, mean ± std in points, real examples per class."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        key = (record["task"], record["learner"], record["condition"], record["ratio"], record["shots"])
        groups.setdefault(key, []).append(record)
    rows = []
    for (task, learner, condition, ratio, shots), members in groups.items():
        scores = [100 * r["score"] for r in members]
        mean, std = mean_std(scores)
        rows.append(
            {
                "task": task,
                "learner": learner,
                "condition": condition,
                "ratio": ratio,
                "shots": shots,
                "metric": members[0]["metric"],
                "n": len(members),
                "mean": mean,
                "std": std,
                "real_per_class": sum(r["real_per_class"] for r in members) / len(members),
                "synthetic_images": sum(r["synthetic_images"] for r in members) / len(members),
                "seeds": sorted(r["seed"] for r in members),
            }
        )
    rows.sort(key=_row_order)
    return rows


def paired_differences(records: Iterable[dict]) -> list[dict]:
    """Each non-real condition minus ``real`` on the same (task, learner, shots, seed), in points."""
    records = list(records)
    real = {
        (r["task"], r["learner"], r["shots"], r["seed"]): 100 * r["score"] for r in records if r["condition"] == "real"
    }
    groups: dict[tuple, list[float]] = {}
    for record in records:
        if record["condition"] == "real":
            continue
        base = real.get((record["task"], record["learner"], record["shots"], record["seed"]))
        if base is None:
            continue
        key = (record["task"], record["learner"], record["condition"], record["ratio"], record["shots"])
        groups.setdefault(key, []).append(100 * record["score"] - base)
    rows = []
    for (task, learner, condition, ratio, shots), diffs in groups.items():
        rows.append(
            {
                "task": task,
                "learner": learner,
                "condition": condition,
                "ratio": ratio,
                "shots": shots,
                **paired_statistics(diffs),
            }
        )
    rows.sort(key=_row_order)
    return rows


def _row_order(row: dict) -> tuple:
    """Tables list task, learner, shots, condition (CONDITIONS order), then ratio."""
    return (
        row["task"],
        row["learner"],
        shots_key(row["shots"]),
        CONDITIONS.index(row["condition"]),
        _ratio_key(row["ratio"]),
    )


def _format_ratio(ratio) -> str:
    return "—" if ratio is None else f"{ratio:g}×"


def _format_difference(row: dict | None) -> str:
    if row is None:
        return ""
    if row["ci_low"] is None:
        return f"{row['mean']:+.1f} (1 seed)"
    return f"{row['mean']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] {row['verdict']}"


def markdown_table(summary: list[dict], differences: list[dict]) -> str:
    """Per learner and ratio: one row per shots, a column per condition (mean ± std, points) and the paired
    difference of each other condition against real only with its 95 % CI and verdict."""
    if not summary:
        return "(no runs)\n"
    metric = summary[0]["metric"]
    conditions = [c for c in CONDITIONS if any(r["condition"] == c for r in summary)]
    others = [c for c in conditions if c != "real"]
    cells = {(r["learner"], r["condition"], r["ratio"], r["shots"]): r for r in summary}
    diffs = {(r["learner"], r["condition"], r["ratio"], r["shots"]): r for r in differences}
    ratios = sorted({r["ratio"] for r in summary if r["ratio"] is not None}) or [None]
    lines = []
    for learner in dict.fromkeys(r["learner"] for r in summary):
        for ratio in ratios:
            lines.append(
                f"**{learner}**, synthetic ratio {_format_ratio(ratio)} ({metric}, points, mean ± std over "
                "seeds; Δ = paired difference vs real only [95 % CI])"
            )
            lines.append("")
            header = [
                "real / class",
                *(CONDITION_LABELS[c] for c in conditions),
                *(f"Δ {CONDITION_LABELS[c]}" for c in others),
            ]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            shots_list = sorted({r["shots"] for r in summary if r["learner"] == learner}, key=shots_key)
            for shots in shots_list:
                real_row = cells.get((learner, "real", None, shots))
                per_class = (
                    real_row["real_per_class"]
                    if real_row
                    else next(
                        (r["real_per_class"] for r in summary if r["learner"] == learner and r["shots"] == shots), 0
                    )
                )
                label = f"{shots}" if shots != ALL else f"all ({per_class:.0f})"
                row = [label]
                for condition in conditions:
                    cell = cells.get((learner, condition, None if condition == "real" else ratio, shots))
                    row.append(f"{cell['mean']:.1f} ± {cell['std']:.1f} (n={cell['n']})" if cell else "")
                for condition in others:
                    row.append(_format_difference(diffs.get((learner, condition, ratio, shots))))
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines)


def csv_text(summary: list[dict], differences: list[dict]) -> str:
    diffs = {(r["learner"], r["condition"], r["ratio"], r["shots"]): r for r in differences}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "task",
            "learner",
            "condition",
            "ratio",
            "shots",
            "real_per_class",
            "synthetic_images",
            "metric",
            "n",
            "mean",
            "std",
            "diff_vs_real",
            "diff_ci_low",
            "diff_ci_high",
            "diff_p_value",
            "verdict",
        ]
    )
    for row in summary:
        diff = diffs.get((row["learner"], row["condition"], row["ratio"], row["shots"]))
        writer.writerow(
            [
                row["task"],
                row["learner"],
                row["condition"],
                "" if row["ratio"] is None else row["ratio"],
                row["shots"],
                f"{row['real_per_class']:.2f}",
                f"{row['synthetic_images']:.1f}",
                row["metric"],
                row["n"],
                f"{row['mean']:.3f}",
                f"{row['std']:.3f}",
                *(
                    ("", "", "", "", "")
                    if diff is None
                    else (
                        f"{diff['mean']:.3f}",
                        "" if diff["ci_low"] is None else f"{diff['ci_low']:.3f}",
                        "" if diff["ci_high"] is None else f"{diff['ci_high']:.3f}",
                        "" if diff["p_value"] is None else f"{diff['p_value']:.4f}",
                        diff["verdict"],
                    )
                ),
            ]
        )
    return buffer.getvalue()


def plot_curves(summary: list[dict], path: str | Path, title: str = "") -> Path:
    """Score against real examples per class (log x), one line per condition (and ratio), std error bars;
    one panel per learner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learners = list(dict.fromkeys(r["learner"] for r in summary))
    figure, axes = plt.subplots(1, len(learners), figsize=(5.5 * len(learners), 4.2), squeeze=False)
    for axis, learner in zip(axes[0], learners):
        rows = [r for r in summary if r["learner"] == learner]
        lines = dict.fromkeys((r["condition"], r["ratio"]) for r in rows)
        for condition, ratio in sorted(lines, key=lambda k: (CONDITIONS.index(k[0]), _ratio_key(k[1]))):
            points = sorted(
                (r for r in rows if r["condition"] == condition and r["ratio"] == ratio),
                key=lambda r: r["real_per_class"],
            )
            label = CONDITION_LABELS[condition] + ("" if ratio is None else f" ({ratio:g}×)")
            axis.errorbar(
                [max(p["real_per_class"], 1e-3) for p in points],
                [p["mean"] for p in points],
                yerr=[p["std"] for p in points],
                marker="o",
                capsize=3,
                label=label,
            )
        axis.set_xscale("log")
        axis.set_xlabel("real examples per class" if rows[0]["task"] == "classify" else "real training pairs")
        axis.set_ylabel(("accuracy" if rows[0]["metric"] == "accuracy" else "mIoU") + " (points)")
        axis.set_title(f"{title} {learner}".strip())
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(figure)
    return path


def write_report(out_dir: str | Path, title: str = "") -> dict:
    """``summary.md``, ``summary.csv``, ``summary.json`` and ``curves.png`` in ``out_dir`` from its runs."""
    out_dir = Path(out_dir)
    records = load_runs(out_dir)
    summary = summarize(records)
    differences = paired_differences(records)
    table = markdown_table(summary, differences)
    write_text_atomic(out_dir / "summary.md", (f"# {title}\n\n" if title else "") + table + "\n")
    write_text_atomic(out_dir / "summary.csv", csv_text(summary, differences))
    from ..files import write_json_atomic

    write_json_atomic(out_dir / "summary.json", {"cells": summary, "differences": differences})
    plot = plot_curves(summary, out_dir / "curves.png", title) if summary else None
    return {"table": table, "summary": summary, "differences": differences, "plot": plot, "runs": len(records)}
