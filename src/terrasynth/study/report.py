"""Analysis of a human realism study: how well people tell real from synthetic tiles, and whether automatic scores
agree with them.

    make_report("sqlite:///study.db", "study-report/", scores={"detector": "detector.csv"})
    # → report.html with plots, report.json, per_image.csv, per_rater.csv

Signal detection follows Macmillan & Creelman, *Detection Theory: A User's Guide* (2005): "synthetic" is the
signal, a hit is a synthetic tile called synthetic, a false alarm a real tile called synthetic;
d′ = z(H) − z(F) and c = −(z(H) + z(F)) / 2, with the log-linear correction of Hautus (1995),
H = (hits + 0.5) / (signal trials + 1), so that rates of 0 or 1 stay finite. Ratings are clustered by rater, so
the primary confidence intervals resample raters (a cluster bootstrap); Wilson intervals that treat every rating
as independent are given beside them and are too narrow when raters differ.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from ..detect.evaluate import roc_auc
from ..errors import InputError
from ..files import atomic_path, write_json_atomic, write_text_atomic
from ..pages import render_page
from .db import REAL, SYNTHETIC

log = logging.getLogger(__name__)

Z95 = NormalDist().inv_cdf(0.975)
BOOTSTRAP_SAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class RatingRecord:
    rater_id: str
    image_id: str
    truth: str
    answer: str
    confidence: int

    @property
    def correct(self) -> bool:
        return self.answer == self.truth


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    id: str
    truth: str
    file_name: str
    path: str


# reading ------------------------------------------------------------------------------------------------------


def load_study(db_url: str) -> tuple[list[RatingRecord], dict[str, ImageRecord]]:
    """Every rating (with its image's truth) and every image of the study at ``db_url``."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from .db import Rating, StudyImage, make_engine

    try:
        url = make_url(db_url)
    except ArgumentError as error:
        raise InputError(None, f"cannot use database URL {db_url!r} ({error})") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).is_file():
            raise InputError(url.database, "study database not found", "give the --db URL the server used")
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            images = {
                row.id: ImageRecord(row.id, row.truth, row.file_name, row.path)
                for row in connection.execute(select(StudyImage))
            }
            query = select(Rating.rater_id, Rating.image_id, Rating.answer, Rating.confidence).order_by(Rating.id)
            ratings = [
                RatingRecord(row.rater_id, row.image_id, images[row.image_id].truth, row.answer, row.confidence)
                for row in connection.execute(query)
            ]
    finally:
        engine.dispose()
    return ratings, images


def read_scores(path: str | Path, images: Mapping[str, ImageRecord]) -> dict[str, float]:
    """Per-image automatic scores from a CSV, keyed by study image id.

    Columns: ``score`` and either ``image_id`` (the study's id) or ``file``. A ``file`` that exists (absolute,
    or relative to the CSV's folder) is matched by its content, so it must be the very file the study showed;
    otherwise it is matched by file name, with an optional ``truth`` column (real/synthetic) to tell apart
    same-named files of the two sets. Rows that match no study image are skipped with a warning. The score's
    direction: higher means "more synthetic" (a detector's probability, a distance to real data). Rows of a
    ``detect scan`` CSV whose ``status`` is not ``ok`` and that have no score (files it could not read) are skipped.
    """
    from ..files import file_sha256

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "scores file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            fields = {(name or "").strip().lower(): name for name in reader.fieldnames or ()}
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"cannot read CSV ({error})") from None
    if "score" not in fields or not ({"image_id", "file"} & set(fields)):
        raise InputError(
            path, f"expected columns 'score' and 'file' or 'image_id', got {sorted(fields)}", "e.g. file,score"
        )
    by_name: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for image in images.values():
        by_name[(image.file_name, None)].append(image.id)
        by_name[(image.file_name, image.truth)].append(image.id)
    scores: dict[str, float] = {}
    unmatched = 0
    skipped = 0
    for line, row in enumerate(rows, start=2):
        cell = (row.get(fields["score"]) or "").strip()
        status = (row.get(fields["status"]) or "").strip() if "status" in fields else "ok"
        if status != "ok" and not cell:  # a `detect scan` row for a file it could not score (not an image, ...)
            skipped += 1
            continue
        try:
            score = float(cell)
        except ValueError:
            raise InputError(path, f"line {line}: score {cell!r} is not a number") from None
        if not math.isfinite(score):
            raise InputError(path, f"line {line}: score {cell!r} is not finite")
        image_id = _match_row(path, row, fields, images, by_name, file_sha256)
        if image_id is None:
            unmatched += 1
            continue
        if image_id in scores:
            raise InputError(path, f"line {line}: a second score for the same image ({image_id[:12]})")
        scores[image_id] = score
    if skipped:
        log.warning("%s: %d rows without a score (status other than ok) skipped", path, skipped)
    if unmatched:
        log.warning("%s: %d of %d rows match no study image", path, unmatched, len(rows))
    if not scores:
        raise InputError(path, "no row matches an image of the study", "use the files the study showed, or image_id")
    return scores


def _match_row(path, row, fields, images, by_name, file_sha256) -> str | None:
    if "image_id" in fields:
        image_id = (row.get(fields["image_id"]) or "").strip().lower()
        if image_id:
            return image_id if image_id in images else None
    name = (row.get(fields["file"]) or "").strip() if "file" in fields else ""
    if not name:
        return None
    candidate = Path(name) if Path(name).is_absolute() else path.parent / name
    if candidate.is_file():
        image_id = file_sha256(candidate)
        if image_id in images:
            return image_id
    truth = ((row.get(fields["truth"]) or "").strip().lower() or None) if "truth" in fields else None
    if truth not in (None, REAL, SYNTHETIC):
        raise InputError(path, f"truth must be 'real' or 'synthetic', got {truth!r}")
    ids = by_name.get((Path(name).name, truth), [])
    if len(ids) > 1:
        log.warning("%s: %s names %d study images; add a truth column to tell them apart", path, name, len(ids))
        return None
    return ids[0] if ids else None


# statistics ---------------------------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if trials == 0:
        return (math.nan, math.nan)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def d_prime(hits: int, signal_trials: int, false_alarms: int, noise_trials: int) -> tuple[float, float]:
    """(d′, criterion c) with the log-linear correction; NaN without trials of both kinds."""
    if signal_trials == 0 or noise_trials == 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf
    hit_rate = (hits + 0.5) / (signal_trials + 1)
    false_alarm_rate = (false_alarms + 0.5) / (noise_trials + 1)
    return (z(hit_rate) - z(false_alarm_rate), -(z(hit_rate) + z(false_alarm_rate)) / 2)


def spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int]:
    """Spearman's ρ with its two-sided p-value; NaN with fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return {"rho": math.nan, "p": math.nan, "n": len(x)}
    result = spearmanr(x, y)
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": len(x)}


def _summary(ratings: Sequence[RatingRecord]) -> dict[str, float]:
    signal = [r for r in ratings if r.truth == SYNTHETIC]
    noise = [r for r in ratings if r.truth == REAL]
    hits = sum(r.answer == SYNTHETIC for r in signal)
    false_alarms = sum(r.answer == SYNTHETIC for r in noise)
    dp, criterion = d_prime(hits, len(signal), false_alarms, len(noise))
    correct = sum(r.correct for r in ratings)
    return {
        "n": len(ratings),
        "accuracy": correct / len(ratings) if ratings else math.nan,
        "hit_rate": hits / len(signal) if signal else math.nan,
        "false_alarm_rate": false_alarms / len(noise) if noise else math.nan,
        "d_prime": dp,
        "criterion": criterion,
    }


def _bootstrap_over_raters(
    by_rater: Mapping[str, Sequence[RatingRecord]], seed: int, samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of accuracy and d′ when whole raters are resampled."""
    raters = list(by_rater)
    if len(raters) < 2:
        return {"accuracy": (math.nan, math.nan), "d_prime": (math.nan, math.nan)}
    rng = np.random.default_rng(seed)
    stats = defaultdict(list)
    for _ in range(samples):
        chosen = rng.integers(0, len(raters), len(raters))
        pooled = [r for i in chosen for r in by_rater[raters[i]]]
        summary = _summary(pooled)
        stats["accuracy"].append(summary["accuracy"])
        stats["d_prime"].append(summary["d_prime"])
    return {key: tuple(float(v) for v in np.nanpercentile(values, [2.5, 97.5])) for key, values in stats.items()}


# the analysis -------------------------------------------------------------------------------------------------


def analyse_ratings(
    ratings: Sequence[RatingRecord],
    images: Mapping[str, ImageRecord],
    scores: Mapping[str, Mapping[str, float]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Every number of the report, as plain JSON-able data."""
    if not ratings:
        raise InputError(None, "the study has no ratings yet", "collect some with `terrasynth study serve`")
    by_rater: dict[str, list[RatingRecord]] = defaultdict(list)
    by_image: dict[str, list[RatingRecord]] = defaultdict(list)
    for rating in ratings:
        by_rater[rating.rater_id].append(rating)
        by_image[rating.image_id].append(rating)

    overall = _summary(ratings)
    correct = sum(r.correct for r in ratings)
    overall["accuracy_wilson_95"] = wilson_interval(correct, len(ratings))
    boot = _bootstrap_over_raters(by_rater, seed)
    overall["accuracy_bootstrap_95"] = boot["accuracy"]
    overall["d_prime_bootstrap_95"] = boot["d_prime"]
    overall["raters"] = len(by_rater)
    overall["images_rated"] = len(by_image)
    # rating-scale ROC: "synthetic, sure" > ... > "real, sure"
    signed = [r.confidence if r.answer == SYNTHETIC else -r.confidence for r in ratings]
    overall["rating_auc"] = roc_auc([r.truth == SYNTHETIC for r in ratings], signed)

    per_rater = []
    for rater_id, own in by_rater.items():
        summary = _summary(own)
        summary["rater_id"] = rater_id
        summary["accuracy_wilson_95"] = wilson_interval(sum(r.correct for r in own), len(own))
        per_rater.append(summary)
    per_rater.sort(key=lambda s: s["accuracy"])
    accuracies = np.array([s["accuracy"] for s in per_rater])
    overall["mean_rater_accuracy"] = float(accuracies.mean())
    overall["raters_above_chance"] = int(sum(s["accuracy_wilson_95"][0] > 0.5 for s in per_rater))

    per_image = []
    for image_id, own in by_image.items():
        image = images[image_id]
        said_synthetic = sum(r.answer == SYNTHETIC for r in own) / len(own)
        per_image.append(
            {
                "image_id": image_id,
                "file_name": image.file_name,
                "truth": image.truth,
                "n": len(own),
                "synthetic_rate": said_synthetic,
                # wrongly judged: a synthetic tile taken for real, or a real one taken for synthetic
                "fooling_rate": 1 - said_synthetic if image.truth == SYNTHETIC else said_synthetic,
                "mean_confidence": float(np.mean([r.confidence for r in own])),
            }
        )
    per_image.sort(key=lambda row: (row["truth"], -row["fooling_rate"], row["file_name"]))
    fooling = {
        truth: [row["fooling_rate"] for row in per_image if row["truth"] == truth] for truth in (REAL, SYNTHETIC)
    }
    overall["mean_fooling_rate_synthetic"] = float(np.mean(fooling[SYNTHETIC])) if fooling[SYNTHETIC] else math.nan
    overall["mean_fooling_rate_real"] = float(np.mean(fooling[REAL])) if fooling[REAL] else math.nan

    calibration = []
    for level in range(1, 6):
        own = [r for r in ratings if r.confidence == level]
        k = sum(r.correct for r in own)
        calibration.append(
            {
                "confidence": level,
                "n": len(own),
                "accuracy": k / len(own) if own else math.nan,
                "wilson_95": wilson_interval(k, len(own)),
                # the accuracy a calibrated rater would have if 1 means guessing and 5 means certain
                "expected": 0.5 + (level - 1) / 8,
            }
        )
    ece = sum(row["n"] * abs(row["accuracy"] - row["expected"]) for row in calibration if row["n"]) / len(ratings)
    confidence_vs_correct = spearman([r.confidence for r in ratings], [float(r.correct) for r in ratings])

    agreement = []
    rated = {row["image_id"]: row for row in per_image}
    for name, values in (scores or {}).items():
        common = [i for i in values if i in rated]
        synthetic = [i for i in common if rated[i]["truth"] == SYNTHETIC]
        agreement.append(
            {
                "name": name,
                "images": len(common),
                "vs_people_all": spearman([values[i] for i in common], [rated[i]["synthetic_rate"] for i in common]),
                "vs_fooling_synthetic": spearman(
                    [values[i] for i in synthetic], [-rated[i]["fooling_rate"] for i in synthetic]
                ),
                "score_auc": roc_auc([rated[i]["truth"] == SYNTHETIC for i in common], [values[i] for i in common]),
                "people_auc": roc_auc(
                    [rated[i]["truth"] == SYNTHETIC for i in common], [rated[i]["synthetic_rate"] for i in common]
                ),
            }
        )
    return {
        "overall": overall,
        "per_rater": per_rater,
        "per_image": per_image,
        "calibration": {
            "levels": calibration,
            "expected_calibration_error": ece,
            "confidence_vs_correct": confidence_vs_correct,
        },
        "agreement": agreement,
        "seed": seed,
        "bootstrap_samples": BOOTSTRAP_SAMPLES,
    }


# writing ------------------------------------------------------------------------------------------------------


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _fmt(value: Any, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if percent:
        return f"{100 * value:.1f} %"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(pair: Sequence[float], percent: bool = False, digits: int = 3) -> str:
    if any(math.isnan(v) for v in pair):
        return "–"
    return f"[{_fmt(pair[0], digits, percent)}, {_fmt(pair[1], digits, percent)}]"


def _p_value(p: float) -> str:
    return "–" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def _save_figure(figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _plots(report: dict[str, Any], out: Path, scores_by_name: Mapping[str, Mapping[str, float]]) -> list[str]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = []
    figure = Figure(figsize=(6, 3.4))
    ax = figure.add_subplot()
    accuracies = [r["accuracy"] for r in report["per_rater"]]
    # error bar lengths, clipped at 0 against rounding at accuracies of 0 and 1
    lows = [max(0.0, r["accuracy"] - r["accuracy_wilson_95"][0]) for r in report["per_rater"]]
    highs = [max(0.0, r["accuracy_wilson_95"][1] - r["accuracy"]) for r in report["per_rater"]]
    ax.errorbar(range(len(accuracies)), accuracies, yerr=[lows, highs], fmt="o", ms=4, capsize=2, label="rater")
    ax.axhline(0.5, color="grey", ls="--", label="chance")
    ax.axhline(report["overall"]["accuracy"], color="C3", label="all ratings")
    ax.set(xlabel="rater (sorted)", ylabel="accuracy", ylim=(0, 1.02), title="Rater accuracy (95 % Wilson)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="lower right")
    _save_figure(figure, out / "rater_accuracy.png")
    names.append("rater_accuracy.png")

    figure = Figure(figsize=(4.6, 3.6))
    ax = figure.add_subplot()
    levels = [row for row in report["calibration"]["levels"] if row["n"]]
    ax.plot([1, 5], [0.5, 1.0], color="grey", ls="--", label="calibrated")
    ax.errorbar(
        [row["confidence"] for row in levels],
        [row["accuracy"] for row in levels],
        yerr=[
            [max(0.0, row["accuracy"] - row["wilson_95"][0]) for row in levels],
            [max(0.0, row["wilson_95"][1] - row["accuracy"]) for row in levels],
        ],
        fmt="o-",
        capsize=3,
        label="people",
    )
    ax.set(xlabel="confidence", ylabel="accuracy", xticks=range(1, 6), ylim=(0, 1.02), title="Calibration")
    ax.legend(fontsize=8)
    _save_figure(figure, out / "calibration.png")
    names.append("calibration.png")

    figure = Figure(figsize=(5.4, 3.4))
    ax = figure.add_subplot()
    bins = np.linspace(0, 1, 11)
    for truth, colour in ((SYNTHETIC, "C1"), (REAL, "C0")):
        values = [row["fooling_rate"] for row in report["per_image"] if row["truth"] == truth]
        if values:
            ax.hist(values, bins=bins, alpha=0.6, color=colour, label=f"{truth} ({len(values)})")
    ax.set(xlabel="share of ratings that were wrong", ylabel="images", title="Per-image fooling rate")
    ax.legend(fontsize=8)
    _save_figure(figure, out / "fooling_rate.png")
    names.append("fooling_rate.png")

    rated = {row["image_id"]: row for row in report["per_image"]}
    for index, (name, values) in enumerate(scores_by_name.items()):
        figure = Figure(figsize=(4.6, 3.6))
        ax = figure.add_subplot()
        for truth, colour in ((SYNTHETIC, "C1"), (REAL, "C0")):
            ids = [i for i in values if i in rated and rated[i]["truth"] == truth]
            ax.scatter([values[i] for i in ids], [rated[i]["synthetic_rate"] for i in ids], s=14, c=colour, label=truth)
        ax.set(xlabel=name, ylabel="share of people saying synthetic", ylim=(-0.02, 1.02), title=f"People vs {name}")
        ax.legend(fontsize=8)
        file_name = f"agreement_{index}.png"
        _save_figure(figure, out / file_name)
        names.append(file_name)
    return names


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v, 4) if isinstance(v, float) else v for k, v in row.items()})


def write_report(
    report: dict[str, Any], out_dir: str | Path, scores: Mapping[str, Mapping[str, float]] | None = None
) -> Path:
    """``report.html`` with plots, ``report.json``, ``per_image.csv`` and ``per_rater.csv`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(report, out, scores or {})
    write_json_atomic(out / "report.json", _json_ready(report))
    _write_csv(
        out / "per_image.csv",
        report["per_image"],
        ("image_id", "file_name", "truth", "n", "synthetic_rate", "fooling_rate", "mean_confidence"),
    )
    _write_csv(
        out / "per_rater.csv",
        report["per_rater"],
        ("rater_id", "n", "accuracy", "hit_rate", "false_alarm_rate", "d_prime", "criterion"),
    )
    page = out / "report.html"
    write_text_atomic(page, _html(report, plots))
    log.info("study report written to %s", page)
    return page


def _html(report: dict[str, Any], plots: Sequence[str]) -> str:
    o = report["overall"]
    cal = report["calibration"]
    summary = [
        ("ratings / raters / images rated", f"{o['n']} / {o['raters']} / {o['images_rated']}"),
        ("accuracy (all ratings)", _fmt(o["accuracy"], percent=True)),
        ("  95 % CI, bootstrap over raters", _interval(o["accuracy_bootstrap_95"], percent=True)),
        ("  95 % CI, Wilson (ratings independent)", _interval(o["accuracy_wilson_95"], percent=True)),
        ("mean rater accuracy", _fmt(o["mean_rater_accuracy"], percent=True)),
        ("raters above chance (Wilson lower bound > 50 %)", f"{o['raters_above_chance']} of {o['raters']}"),
        ("d′ (synthetic = signal)", _fmt(o["d_prime"], 2)),
        ("  95 % CI, bootstrap over raters", _interval(o["d_prime_bootstrap_95"], digits=2)),
        ("criterion c (> 0: leaning to 'real')", _fmt(o["criterion"], 2)),
        (
            "hit rate / false-alarm rate",
            f"{_fmt(o['hit_rate'], percent=True)} / {_fmt(o['false_alarm_rate'], percent=True)}",
        ),
        ("rating-scale AUC (answer × confidence)", _fmt(o["rating_auc"])),
        ("mean fooling rate, synthetic images", _fmt(o["mean_fooling_rate_synthetic"], percent=True)),
        ("mean fooling rate, real images", _fmt(o["mean_fooling_rate_real"], percent=True)),
    ]
    rho = cal["confidence_vs_correct"]
    return render_page(
        "study/report.html",
        summary=summary,
        plots=plots,
        calibration=[
            {
                "confidence": row["confidence"],
                "n": row["n"],
                "accuracy": _fmt(row["accuracy"], percent=True),
                "wilson": _interval(row["wilson_95"], percent=True),
                "expected": _fmt(row["expected"], percent=True),
            }
            for row in cal["levels"]
        ],
        ece=_fmt(cal["expected_calibration_error"]),
        rho={"rho": _fmt(rho["rho"]), "p": _p_value(rho["p"]), "n": rho["n"]},
        agreement=[
            {
                "name": a["name"],
                "images": a["images"],
                "rho_all": _fmt(a["vs_people_all"]["rho"]),
                "p_all": _p_value(a["vs_people_all"]["p"]),
                "rho_synthetic": _fmt(a["vs_fooling_synthetic"]["rho"]),
                "n_synthetic": a["vs_fooling_synthetic"]["n"],
                "score_auc": _fmt(a["score_auc"]),
                "people_auc": _fmt(a["people_auc"]),
            }
            for a in report["agreement"]
        ],
        per_image=[
            {
                "image_id": row["image_id"],
                "file_name": row["file_name"],
                "truth": row["truth"],
                "n": row["n"],
                "fooling_rate": _fmt(row["fooling_rate"], percent=True),
                "mean_confidence": _fmt(row["mean_confidence"], 2),
            }
            for row in report["per_image"]
        ],
        bootstrap_samples=report["bootstrap_samples"],
        seed=report["seed"],
    )


def make_report(
    db_url: str, out_dir: str | Path, scores: Mapping[str, str | Path] | None = None, seed: int = 0
) -> Path:
    """Read the study at ``db_url`` and the score CSVs, analyse, and write the report into ``out_dir``."""
    ratings, images = load_study(db_url)
    loaded = {name: read_scores(path, images) for name, path in (scores or {}).items()}
    report = analyse_ratings(ratings, images, loaded, seed=seed)
    return write_report(report, out_dir, loaded)
