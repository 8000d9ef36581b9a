"""benchmarks/detection.py end to end on a tiny manifest made in code: leave-one-generator-out and
leave-one-source-out rows under every test perturbation, localisation on composites, the shipped detector."""

import csv

import numpy as np
from PIL import Image
from tests.benchmark_scripts import load_benchmark
from tests.detect.fake_tiles import smooth_field, upsampled_noise

from terrasynth.detect.detector import DetectorConfig, load_detector
from terrasynth.detect.evaluate import roc_auc
from terrasynth.detect.features import FEATURE_WIDTH
from terrasynth.detect.probe import FORENSIC_COLUMNS, PEAK_COLUMNS, TRACE_COLUMNS, ProbeDetector


def bilinear_noise(rng, size=64):
    small = rng.integers(0, 256, (size // 2, size // 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR))


def write_manifest(root, n=24, size=64, optional_family=False):
    rng = np.random.default_rng(0)
    rows = []

    def add(image, label, family, generator, source, index, mask=""):
        path = root / family / generator / f"{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        side = "a" if index % 2 == 0 else "b"
        rows.append(dict(path=path, label=label, family=family, generator=generator, source=source, side=side,
                         mask=mask))  # fmt: skip

    for i in range(n * 3):
        add(smooth_field(rng, size, noise=2.0), 0, "real", "one", "one", i)
        add(smooth_field(rng, size, noise=3.0, cell=16), 0, "real", "two", "two", i)
    for i in range(n):
        add(upsampled_noise(rng, size), 1, "nearest", "x2", "one", i)
        add(bilinear_noise(rng, size), 1, "bilinear", "x2", "two", i)
        image = smooth_field(rng, size, noise=2.0)
        mask = np.zeros((size, size), np.uint8)
        mask[:, size // 2 :] = 255
        image[:, size // 2 :] = upsampled_noise(rng, size)[:, size // 2 :]
        mask_path = root / "composite" / "masks" / f"{i:03d}.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(mask_path)
        add(image, 1, "composite", "half", "one", i, str(mask_path))
        if optional_family:
            add(upsampled_noise(rng, size), 1, "smallae", "nearest", "two", i)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_detection_benchmark_runs_end_to_end(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "sets")
    benchmark = load_benchmark("detection")
    figures = benchmark.main(
        ["--sets", str(manifest), "--cache", str(tmp_path / "cache"), "--input-size", "32", "--max-tiles", "4",
         "--max-real", "60", "--max-real-test", "20", "--max-fake", "12", "--max-fake-test", "12",
         "--perturbations", "clean", "resize0.5", "--save-detector", str(tmp_path / "probe"),
         "--json", str(tmp_path / "figures.json"), "-q"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith("command: python benchmarks/detection.py --sets")
    logo, loso = figures["leave_one_generator_out"], figures["leave_one_source_out"]
    assert set(logo) == {"nearest", "bilinear", "composite"}
    assert set(loso) == {"one", "two", "one+calibrated", "two+calibrated"}
    # calibrated on its own side-a tiles, the source's test tiles and the fakes are the same as before
    assert loso["one+calibrated"]["clean"]["n_real"] == loso["one"]["clean"]["n_real"]
    assert loso["one+calibrated"]["clean"]["n_fake"] == loso["one"]["clean"]["n_fake"]
    for rows in list(logo.values()) + list(loso.values()):
        assert {"clean", "resize0.5"} <= set(rows)  # jpeg75 and crop0.5 too by default
        for row in (rows[v] for v in ("clean", "resize0.5")):
            assert 0 <= row["fpr"] <= 1 and row["n_real"] > 0 and row["n_fake"] > 0
    # a family is scored only by a detector that never saw it, yet up-sampling traces carry over
    assert logo["nearest"]["clean"]["n_fake"] == 12 and logo["nearest"]["clean"]["auc"] > 0.8
    assert 0 <= logo["composite"]["localisation"]["iou_mean_area_25"] <= 1
    assert "localisation_strict" in logo["composite"]
    assert "worst held-out family AUC, clean" in out and "worst held-out source FPR, clean" in out
    assert "the same, calibrated on the source" in out
    # both unseen at once: each source's real tiles against each family, by a detector that saw neither
    both = figures["leave_source_and_generator_out"]
    # (with source "one" and the bilinear family held out no synthetic image is left to train on: no row)
    assert set(both) == {"one/nearest", "one/composite", "two/nearest", "two/bilinear", "two/composite"}
    assert both["one/nearest"]["clean"]["n_real"] == loso["one"]["clean"]["n_real"]
    assert both["one/nearest"]["clean"]["n_fake"] == logo["nearest"]["clean"]["n_fake"]
    assert "leave one source and one family out" in out
    assert (tmp_path / "figures.json").is_file()
    # the cache is used: a second run computes no feature set again
    before = len(list((tmp_path / "cache").glob("*.npy")))
    benchmark.main(["--sets", str(manifest), "--cache", str(tmp_path / "cache"), "--input-size", "32",
                    "--max-tiles", "4", "--max-real", "60", "--max-real-test", "20", "--max-fake", "12",
                    "--max-fake-test", "12", "--perturbations", "clean", "--no-localise", "-q"])  # fmt: skip
    assert len(list((tmp_path / "cache").glob("*.npy"))) == before
    shipped = load_detector(tmp_path / "probe")
    assert shipped.config.method == "probe" and len(shipped.joint_calibration) > 0


def test_design_selection_never_tests_on_what_it_trained_on(tmp_path, capsys):
    """benchmarks/detection_select.py: nested leave-one-generator-out inside side a. Everything made from one tile
    stays on one inner side, side b is never read, and every outer family gets a chosen design."""
    manifest = write_manifest(tmp_path / "sets", n=12)
    select = load_benchmark("detection_select")
    result = select.main(
        ["--sets", str(manifest), "--cache", str(tmp_path / "cache"), "--input-size", "32", "--max-tiles", "4",
         "--max-real", "30", "--max-fake", "8", "--perturbations", "clean",
         "--designs", "max(forensic,content)", "forensic", "--trainings", "two shrunk copies", "no colour statistics"]
    )  # fmt: skip
    out = capsys.readouterr().out
    train_origins = {select.origin(r) for r in result["inner_train"]}
    test_origins = {select.origin(r) for r in result["inner_test"]}
    assert train_origins and test_origins and not train_origins & test_origins
    assert all(r["side"] == "a" for r in result["inner_train"] + result["inner_test"])
    assert set(result["winners"]) == {"nearest", "bilinear", "composite"}
    trainings = ("two shrunk copies", "no colour statistics")
    candidates = {f"{d} / {t}" for d in ("max(forensic,content)", "forensic") for t in trainings}
    assert set(result["winners"].values()) <= candidates and set(result["auc"]) == candidates
    # each outer family's rows test the other families only
    for rows in result["auc"].values():
        assert rows and all(outer != tested for outer, tested, _ in rows)
    assert "chosen per outer fold by AUC" in out and "chosen per outer fold by share flagged" in out
    assert set(result["flag_winners"]) == set(result["winners"]) and set(result["flagged"]) == candidates


def test_design_selection_can_hold_out_a_source_too(tmp_path, capsys):
    """With --hold-out-source, each row is a detector that saw neither the tested family nor the tested real source:
    its real test tiles are that source's alone."""
    manifest = write_manifest(tmp_path / "sets", n=12)
    select = load_benchmark("detection_select")
    result = select.main(
        ["--sets", str(manifest), "--cache", str(tmp_path / "cache"), "--input-size", "32", "--max-tiles", "4",
         "--max-real", "30", "--max-fake", "8", "--perturbations", "clean", "--hold-out-source",
         "--designs", "max(forensic,content)", "max(forensic,content) everywhere"]
    )  # fmt: skip
    out = capsys.readouterr().out
    rows = result["auc"]["max(forensic,content) everywhere"]
    assert {source for source, _, _, _ in rows} == {"one", "two"}
    assert all(outer != tested for _, outer, tested, _ in rows)
    # source "one" held out with nearest and composite: only bilinear fakes (made from "two") are left to train on;
    # with bilinear held out too, nothing is, and the pair is skipped rather than trained on real tiles alone
    assert ("one", "composite", "nearest", "clean") in rows and ("one", "bilinear", "nearest", "clean") not in rows
    assert "no synthetic image left to train on, skipped" in out and "without one" in out
    assert set(result["winners"]) == {"nearest", "bilinear", "composite"}


def test_an_optional_family_trains_only_the_candidate_that_names_it(tmp_path):
    """A family under trial (smallae) is never held out nor tested: it is extra training data for the candidate
    'with small autoencoders', and the baseline candidate never sees it."""
    manifest = write_manifest(tmp_path / "sets", n=12, optional_family=True)
    select = load_benchmark("detection_select")
    trained = []
    original = select.train_fold

    def recording(config, cache, train, calibration, variants, detector_class):
        trained.append({r["family"] for r in train if r["label"] == 1})
        return original(config, cache, train, calibration, variants, detector_class)

    select.train_fold = recording
    result = select.main(
        ["--sets", str(manifest), "--cache", str(tmp_path / "cache"), "--input-size", "32", "--max-tiles", "4",
         "--max-real", "30", "--max-fake", "8", "--perturbations", "clean", "--designs", "max(forensic,content)",
         "--trainings", "two shrunk copies", "with small autoencoders"]
    )  # fmt: skip
    assert set(result["winners"]) == {"nearest", "bilinear", "composite"}
    assert all("smallae" not in key for rows in result["auc"].values() for key in rows)
    # three pairs, each trained once per candidate: the baseline without smallae, the candidate with it
    assert len(trained) == 6
    assert all("smallae" not in families for families in trained[0::2])
    assert all("smallae" in families for families in trained[1::2])
    assert all(0 <= v <= 1 for rows in result["false_positives"].values() for v in rows.values())


def test_a_training_may_change_the_columns_a_probe_reads():
    """'grid peaks in the trace probe too' trains a detector whose trace probe reads the grid peaks; the shipped
    trace probe never does, and the forensic probe reads them in both."""
    select = load_benchmark("detection_select")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, FEATURE_WIDTH))
    labels = (features[:, PEAK_COLUMNS[0]] + 0.3 * rng.normal(size=3000) > 0).astype(int)  # told by one peak column
    config = DetectorConfig(method="probe")
    shipped = ProbeDetector(config).fit_features(features, labels)
    candidate = select.TRAININGS["grid peaks in the trace probe too"].detector(config).fit_features(features, labels)
    assert not set(TRACE_COLUMNS) & set(PEAK_COLUMNS) and set(PEAK_COLUMNS) <= set(FORENSIC_COLUMNS)
    assert len(candidate.trace_coef) == len(TRACE_COLUMNS) + len(PEAK_COLUMNS)
    assert np.abs(candidate.trace_coef[-len(PEAK_COLUMNS) :]).max() > 5 * np.abs(shipped.trace_coef).max()
    z = (features - shipped.mean) / shipped.scale
    assert (
        roc_auc(labels, candidate.tile_logits(z)["trace"])
        > 0.9
        > 0.6
        > roc_auc(labels, shipped.tile_logits(z)["trace"])
    )
    assert roc_auc(labels, shipped.tile_logits(z)["forensic"]) > 0.9


def test_grid_peaks_benchmark_ranks_each_family_by_the_peaks_alone(tmp_path):
    """benchmarks/grid_peaks.py: a family with a transposed convolution's ×2 checkerboard ranks far above genuine
    tiles by its period-2 peaks, one without a grid does not, and the two real sources get a row of their own."""
    rng = np.random.default_rng(3)
    x = np.arange(128)
    checker = 5.0 * (-1.0) ** (x[:, None] + x[None, :])
    rows = []
    for i in range(36):
        family, source, label = [("real", "one", 0), ("real", "two", 0), ("checker", "one", 1)][i % 3]
        field = smooth_field(rng, 128, noise=4.0).astype(np.float64) * 0.7 + 38.0  # off 0 and 255
        image = field + checker[..., None] if family == "checker" else field
        path = tmp_path / f"{i:03d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        rows.append(dict(path=path, label=label, family=family, generator="g", source=source, side="a", mask=""))
    rows += [dict(rows[3 * i], family="plain", label=1) for i in range(6)]  # genuine images labelled synthetic
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    results = load_benchmark("grid_peaks").main(["--sets", str(manifest), "--per-family", "12", "--real", "24"])
    assert results[("clean", "checker")][1] > 0.95 and results[("halved", "checker")][1] < 0.9  # period 2 halved
    assert results[("clean", "plain")][1] < 0.9
    assert ("clean", "two vs one") in results


def test_the_everywhere_statistic_scores_new_regions_on_the_joint_scale():
    """Outside the content domain the shipped statistic falls back to the trace probe's; the candidate keeps the
    joint one. Inside it the two are the same."""
    select = load_benchmark("detection_select")
    stats = {"trace": -1.0, "forensic": 2.5, "content": 0.5}
    everywhere = select.designs()["max(forensic,content) everywhere"]
    shipped = select.designs()["max(forensic,content)"]
    assert shipped.joint(stats, in_content=False) == -1.0 and everywhere.joint(stats, in_content=False) == 2.5
    assert shipped.joint(stats) == everywhere.joint(stats) == 2.5


def test_a_candidate_without_columns_never_reads_them(tmp_path):
    select = load_benchmark("detection_select")
    features = np.arange(3 * 8, dtype=np.float32).reshape(3, 8)
    view = select.WithoutColumns(lambda row, variant: features, [1, 5])
    seen = view({}, "clean")
    assert (seen[:, [1, 5]] == 0).all() and (np.delete(seen, [1, 5], 1) == np.delete(features, [1, 5], 1)).all()
    assert features[0, 1] == 1  # the cache's own array is left alone


def test_chroma_invariance_benchmark_shows_what_full_resolution_colour_reads(tmp_path):
    """benchmarks/chroma_invariance.py on images stored with full-resolution colour (JPEG 4:4:4): re-storing them as
    4:2:0 moves full-resolution colour statistics far more than anything the detector reads."""
    rng = np.random.default_rng(2)
    for i in range(6):
        Image.fromarray(smooth_field(rng, 128, noise=10.0)).save(tmp_path / f"{i}.jpg", quality=95, subsampling=0)
    results = load_benchmark("chroma_invariance").main(["--images", str(tmp_path), "--n", "6"])
    assert results["colour statistics, full resolution (earlier)"] > 3 * results["colour statistics, σ 3 (shipped)"]
    assert results["luma residual statistics (51)"] < 0.3


def test_forensic_probe_selection_reads_side_a_and_applies_its_rule(tmp_path, capsys):
    """benchmarks/forensic_probe_select.py: held-out-family AUC and the unseen-source tail per candidate, side a only;
    the chosen candidate passes the tail rule."""
    manifest = write_manifest(tmp_path / "sets", n=12)
    select = load_benchmark("forensic_probe_select")
    result = select.main(
        ["--sets", str(manifest), "--cache", str(tmp_path / "cache"), "--input-size", "32", "--max-tiles", "4",
         "--candidates", "linear", "depth 2, leaf 1000, 100"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert all(r["side"] == "a" for r in result["inner_train"] + result["inner_test"])
    assert set(result["auc"]) == {"linear", "depth 2, leaf 1000, 100"}
    assert {family for family, _ in result["auc"]["linear"]} == {"nearest", "bilinear", "composite"}
    assert result["auc"]["linear"][("nearest", "clean")] > 0.8
    assert "linear" in result["passing"] and result["chosen"] in result["passing"]
    for rows in result["tail"].values():
        assert {source for source, _ in rows} == {"one", "two"} and all(0 <= v <= 1 for v in rows.values())
    assert "chosen:" in out
