"""The study report: signal-detection and interval maths against known values, the analysis of a study whose
answers are known, the per-image score CSV reader, and ``terrasynth study report`` end to end."""

from __future__ import annotations

import csv
import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from terrasynth.cli import main
from terrasynth.detect.evaluate import roc_auc
from terrasynth.errors import InputError
from terrasynth.files import file_sha256
from terrasynth.study.db import Rater, Rating, StudyImage, open_database, transaction
from terrasynth.study.report import (
    ImageRecord,
    RatingRecord,
    analyse_ratings,
    d_prime,
    load_study,
    make_report,
    read_scores,
    spearman,
    wilson_interval,
)


def test_wilson_interval_known_values():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_d_prime_is_zero_at_chance_and_matches_the_formula():
    assert d_prime(5, 10, 5, 10) == (pytest.approx(0.0), pytest.approx(0.0))
    z = NormalDist().inv_cdf
    dp, c = d_prime(8, 10, 2, 10)
    assert dp == pytest.approx(z(8.5 / 11) - z(2.5 / 11)) and c == pytest.approx(0.0)
    assert math.isfinite(d_prime(10, 10, 0, 10)[0])  # perfect raters stay finite (log-linear correction)
    assert d_prime(2, 10, 8, 10)[0] < 0  # systematically wrong
    assert d_prime(3, 10, 3, 10)[1] > 0  # few "synthetic" answers: leaning to "real"


def test_auc_and_spearman():
    assert roc_auc([False, False, True, True], [1, 2, 3, 4]) == 1.0
    assert roc_auc([False, False, True, True], [4, 3, 2, 1]) == 0.0
    assert roc_auc([False, True, False, True], [1, 1, 1, 1]) == 0.5
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100])["rho"] == pytest.approx(1.0)
    assert math.isnan(spearman([1, 2], [1, 2])["rho"])


def test_auc_is_the_mann_whitney_statistic_with_ties():
    """The report's AUCs (sklearn's, through ``detect.evaluate.roc_auc``) equal U / (n₊ n₋) from scipy, the hand
    formula the report used before, on rating-scale scores full of ties."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    positive = rng.random(200) < 0.4
    scores = rng.integers(-5, 6, 200) + positive  # a rating scale: many ties, a small shift
    u = mannwhitneyu(scores[positive], scores[~positive]).statistic
    assert roc_auc(positive, scores) == pytest.approx(u / (positive.sum() * (~positive).sum()), abs=1e-12)
    assert math.isnan(roc_auc([True, True], [0.1, 0.2]))


def _images(n_real=3, n_fake=3):
    images = {}
    for i in range(n_real):
        images[f"{i:064x}"] = ImageRecord(f"{i:064x}", "real", f"{i:04d}.png", f"/r/{i:04d}.png")
    for i in range(n_fake):
        j = 100 + i
        images[f"{j:064x}"] = ImageRecord(f"{j:064x}", "synthetic", f"{i:04d}.png", f"/f/{i:04d}.png")
    return images


def _known_ratings(images):
    """r0 always right (sure), r1 always says real (unsure), r2 right on real and on the first synthetic."""
    ratings = []
    for image in images.values():
        ratings.append(RatingRecord("r0", image.id, image.truth, image.truth, 5))
        ratings.append(RatingRecord("r1", image.id, image.truth, "real", 1))
        fooled = image.truth == "synthetic" and image.file_name != "0000.png"
        ratings.append(RatingRecord("r2", image.id, image.truth, "real" if fooled else image.truth, 3))
    return ratings


def test_analysis_of_known_answers():
    images = _images()
    report = analyse_ratings(_known_ratings(images), images, seed=0)
    overall = report["overall"]
    # 18 ratings: r0 6 right, r1 3 right, r2 4 right
    assert overall["n"] == 18 and overall["raters"] == 3
    assert overall["accuracy"] == pytest.approx(13 / 18)
    assert overall["hit_rate"] == pytest.approx(4 / 9) and overall["false_alarm_rate"] == 0.0
    low, high = overall["accuracy_bootstrap_95"]
    assert low <= overall["accuracy"] <= high and low < high
    wl, wh = overall["accuracy_wilson_95"]
    assert wl < overall["accuracy"] < wh
    assert overall["d_prime"] > 0
    by_rater = {r["rater_id"]: r for r in report["per_rater"]}
    assert by_rater["r0"]["accuracy"] == 1.0 and by_rater["r1"]["accuracy"] == 0.5
    assert by_rater["r1"]["d_prime"] == pytest.approx(d_prime(0, 3, 0, 3)[0])
    fooling = {(row["truth"], row["file_name"]): row["fooling_rate"] for row in report["per_image"]}
    assert fooling[("real", "0000.png")] == 0.0
    assert fooling[("synthetic", "0000.png")] == pytest.approx(1 / 3)
    assert fooling[("synthetic", "0001.png")] == pytest.approx(2 / 3)
    levels = {row["confidence"]: row for row in report["calibration"]["levels"]}
    assert levels[5]["accuracy"] == 1.0 and levels[1]["accuracy"] == 0.5 and levels[2]["n"] == 0
    assert sum(row["n"] for row in levels.values()) == 18
    assert report["calibration"]["confidence_vs_correct"]["rho"] > 0
    assert 0.5 < overall["rating_auc"] <= 1.0


def test_agreement_with_scores_that_follow_people_is_perfect():
    images = _images()
    ratings = _known_ratings(images)
    said_synthetic = {i: sum(r.answer == "synthetic" for r in ratings if r.image_id == i) for i in images}
    report = analyse_ratings(ratings, images, {"oracle": {i: float(v) for i, v in said_synthetic.items()}})
    (agreement,) = report["agreement"]
    assert agreement["name"] == "oracle" and agreement["images"] == 6
    assert agreement["vs_people_all"]["rho"] == pytest.approx(1.0)
    assert agreement["score_auc"] == pytest.approx(agreement["people_auc"])


def test_no_ratings_is_an_input_error():
    with pytest.raises(InputError, match="no ratings"):
        analyse_ratings([], _images())


# a study database and score CSVs ------------------------------------------------------------------------------


@pytest.fixture
def study_db(tmp_path, study_sets):
    """A database of the fake study sets as the server leaves it, with three raters' answers."""
    real, fake = study_sets
    url = f"sqlite:///{tmp_path / 'report.db'}"
    sessions = open_database(url)
    with transaction(sessions) as session:
        ids = []
        for truth, folder in (("real", real), ("synthetic", fake)):
            for path in sorted(folder.iterdir()):
                ids.append((file_sha256(path), truth))
                session.add(StudyImage(id=ids[-1][0], truth=truth, file_name=path.name, path=str(path)))
        for r, (rater, style) in enumerate((("a", "right"), ("b", "real"), ("c", "mixed"))):
            session.add(Rater(id=rater, token_sha256=f"{r:064x}"))
            session.flush()
            for position, (image_id, truth) in enumerate(ids):
                answer = (
                    truth if style == "right" else "real" if style == "real" else ("synthetic", "real")[position % 2]
                )
                session.add(
                    Rating(
                        rater_id=rater,
                        image_id=image_id,
                        position=position,
                        answer=answer,
                        confidence=1 + position % 5,
                    )
                )
    return url


def _write_csv(path, header, rows):
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_read_scores_matches_by_path_id_and_name(tmp_path, study_db, study_sets):
    real, fake = study_sets
    _, images = load_study(study_db)
    by_path = _write_csv(
        tmp_path / "by_path.csv", ["file", "score"], [[str(p), i] for i, p in enumerate(sorted(fake.iterdir()))]
    )
    scores = read_scores(by_path, images)
    assert set(scores) == {file_sha256(p) for p in fake.iterdir()}
    some_id = next(iter(images))
    assert read_scores(_write_csv(tmp_path / "id.csv", ["image_id", "score"], [[some_id, 0.5]]), images) == {
        some_id: 0.5
    }
    # same-named files in both sets: a truth column tells them apart, without it the row is skipped
    named = _write_csv(
        tmp_path / "named.csv",
        ["File", "Score", "truth"],
        [["0001.jpg", 1, "real"], ["0001.png", 2, "synthetic"], ["gone.png", 3, ""]],
    )
    assert sorted(read_scores(named, images).values()) == [1.0, 2.0]
    ambiguous = _write_csv(tmp_path / "ambiguous.csv", ["file", "score"], [["0000.png", 1], ["0001.jpg", 2]])
    assert list(read_scores(ambiguous, images).values()) == [2.0]


def test_read_scores_skips_the_rows_detect_scan_could_not_score(tmp_path, study_db, study_sets):
    real, fake = study_sets
    _, images = load_study(study_db)
    one = sorted(fake.iterdir())[0]
    header = ["file", "status", "score", "p_value", "verdict", "threshold", "detail"]
    rows = [
        [str(one), "ok", 0.9, 0.01, "synthetic", 0.5, ""],
        [str(tmp_path / "notes.txt"), "not_an_image", "", "", "", 0.5, "x"],
    ]
    scores = read_scores(_write_csv(tmp_path / "scan.csv", header, rows), images)
    assert scores == {file_sha256(one): 0.9}
    # a row that claims ok but has no score is still an error
    rows[1][1] = "ok"
    with pytest.raises(InputError, match="line 3: score '' is not a number"):
        read_scores(_write_csv(tmp_path / "scan2.csv", header, rows), images)


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["name", "value"], [["0001.jpg", 1]], "expected columns"),
        (["file", "score"], [["0001.jpg", "high"]], "line 2: score 'high' is not a number"),
        (["file", "score"], [["0001.jpg", "nan"]], "not finite"),
        (["file", "score"], [["0001.jpg", 1], ["0001.jpg", 2]], "second score"),
        (["file", "score"], [["nothing.png", 1]], "no row matches"),
        (["file", "score", "truth"], [["0001.jpg", 1, "fake"]], "truth must be"),
    ],
)
def test_bad_score_files_name_the_file(tmp_path, study_db, header, rows, message):
    _, images = load_study(study_db)
    path = _write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(InputError, match=message) as error:
        read_scores(path, images)
    assert str(path) in str(error.value)


def test_make_report_writes_html_plots_json_and_csv(tmp_path, study_db, study_sets):
    _, fake = study_sets
    detector = _write_csv(
        tmp_path / "detector.csv", ["file", "score"], [[str(p), i / 4] for i, p in enumerate(sorted(fake.iterdir()))]
    )
    out = tmp_path / "report"
    page = make_report(study_db, out, {"detector": detector})
    text = page.read_text()
    for needle in ("d′", "Calibration", "detector", "fooling rate", "bootstrap over raters"):
        assert needle in text
    for image in ("rater_accuracy.png", "calibration.png", "fooling_rate.png", "agreement_0.png"):
        assert (out / image).stat().st_size > 1000 and f'src="{image}"' in text
    data = json.loads((out / "report.json").read_text())
    assert data["overall"]["n"] == 24 and data["overall"]["raters"] == 3
    assert data["agreement"][0]["images"] == 4
    assert len(list(csv.DictReader((out / "per_image.csv").open()))) == 8
    assert len(list(csv.DictReader((out / "per_rater.csv").open()))) == 3


def test_cli_study_report(tmp_path, study_db, study_sets, capsys):
    _, fake = study_sets
    scores = _write_csv(
        tmp_path / "fd.csv", ["file", "score"], [[str(p), i] for i, p in enumerate(sorted(fake.iterdir()))]
    )
    assert main(["study", "report", "--db", study_db, "--out", str(tmp_path / "r"), "--scores", f"FD={scores}"]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    assert (
        main(["study", "report", "--db", study_db, "--out", str(tmp_path / "r"), "--scores", str(tmp_path / "no.csv")])
        == 2
    )
    assert "no.csv: scores file not found" in capsys.readouterr().err
    assert main(["study", "report", "--db", f"sqlite:///{tmp_path / 'missing.db'}", "--out", str(tmp_path / "r")]) == 2
    assert "missing.db: study database not found" in capsys.readouterr().err
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    open_database(empty)
    assert main(["study", "report", "--db", empty, "--out", str(tmp_path / "r")]) == 2
    assert "no ratings" in capsys.readouterr().err


def test_cli_study_serve_refuses_bad_input(tmp_path, study_sets, monkeypatch, capsys):
    real, fake = study_sets
    monkeypatch.delenv("TERRASYNTH_STUDY_ADMIN_PASSWORD", raising=False)
    args = ["study", "serve", "--real", str(real), "--fake", str(fake), "--db", f"sqlite:///{tmp_path / 's.db'}"]
    assert main(args) == 2
    assert "TERRASYNTH_STUDY_ADMIN_PASSWORD is not set" in capsys.readouterr().err
    monkeypatch.setenv("STUDY_PW", "short")
    assert main([*args, "--admin-password-env", "STUDY_PW"]) == 2
    assert "shorter than 8" in capsys.readouterr().err
    monkeypatch.setenv("STUDY_PW", "a long enough passphrase")
    assert (
        main(
            [
                "study",
                "serve",
                "--real",
                str(tmp_path / "nope"),
                "--fake",
                str(fake),
                "--admin-password-env",
                "STUDY_PW",
            ]
        )
        == 2
    )
    assert "nope: folder not found" in capsys.readouterr().err
