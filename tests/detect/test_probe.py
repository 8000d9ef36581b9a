"""The probe detector: forensic tile features, a linear probe, split-conformal p-values, the domain check and
localisation, on fake tiles made in code (smooth fields are "real", nearest-up-sampled noise is "synthetic")."""

import time

import numpy as np
import pytest
from PIL import Image
from tests.detect.fake_tiles import make_sets, smooth_field, upsampled_noise, write_set
from tests.fakes import png_header

from terrasynth.cli import main
from terrasynth.detect.detector import DetectorConfig, build_detector, load_detector
from terrasynth.detect.evaluate import roc_auc
from terrasynth.detect.features import (
    COLOUR_WIDTH,
    FEATURE_WIDTH,
    PEAK_WIDTH,
    aggd_fit,
    colour_features,
    ggd_fit,
    mscn,
    naturalness_features,
    residual_features,
    tile_features,
    tile_grid,
)
from terrasynth.detect.perturb import EVERYDAY, everyday_processing, jpeg
from terrasynth.detect.probe import TRACE_COLUMNS, conformal_p, two_means, value_at_p
from terrasynth.errors import InputError


def config(**overrides):
    return DetectorConfig(method="probe", input_size=32, max_tiles=4, **overrides)


@pytest.fixture(scope="module")
def trained():
    real, fake = make_sets(40, size=64, seed=1)
    detector = build_detector(config()).fit(real, fake)
    calibration = make_sets(150, size=64, seed=2)[0]
    return detector.calibrate(calibration)


def test_features_have_fixed_width_and_are_finite():
    real, fake = make_sets(3, size=32)
    features = tile_features(np.stack(real + fake))
    assert features.shape == (6, FEATURE_WIDTH) == (6, 860) and np.isfinite(features).all()
    assert residual_features(np.stack(real)).shape == (3, 51)
    assert naturalness_features(np.stack(real)).shape == (3, 36)
    assert colour_features(np.stack(real)).shape == (3, 5)


def test_features_do_not_tell_full_from_half_resolution_chroma():
    # a tile's colour planes stored at full (4:4:4) or half (4:2:0) resolution is the storer's choice, not a trace
    # of a generator; a feature that read it called genuine 4:4:4 orthophotos synthetic
    rng = np.random.default_rng(6)
    images = [smooth_field(rng, 64, noise=12.0) for _ in range(12)]  # noise independent per channel: fine colour
    full = tile_features(np.stack([jpeg(x, 95, subsampling=0) for x in images]))
    half = tile_features(np.stack([jpeg(x, 95, subsampling=2) for x in images]))
    shift = (np.abs(full - half) / (full.std(0) + 1e-6)).mean(0)  # in units of the spread between tiles
    # the luma statistics barely move; with full-resolution chroma statistics one moved by over 100 spreads. The
    # backbone and the coarse colour statistics see low-passed colour and move by less than one spread
    luma_columns = np.r_[TRACE_COLUMNS[0] : FEATURE_WIDTH - COLOUR_WIDTH]
    assert shift[luma_columns].max() < 0.3 and np.delete(shift, luma_columns).max() < 1.0
    # the colour planes of the two copies do differ: 4:2:0 removed the fine chroma
    fine_chroma = lambda x: np.diff(x[..., 2].astype(float) - x[..., 1], axis=1).std()  # noqa: E731
    assert fine_chroma(jpeg(images[0], 95, subsampling=0)) > 1.5 * fine_chroma(jpeg(images[0], 95, subsampling=2))


def test_generalised_gaussian_fits_recover_known_shapes():
    rng = np.random.default_rng(0)
    shape, variance = ggd_fit(np.stack([rng.standard_normal(200_000), rng.laplace(size=200_000)]))
    assert shape == pytest.approx([2.0, 1.0], abs=0.03) and variance == pytest.approx([1.0, 2.0], rel=0.02)
    # an asymmetric generalised Gaussian of shape 2: half-Gaussians of spread 0.5 (left) and 2 (right), each side
    # drawn in proportion to its spread
    left, right, n = 0.5, 2.0, 400_000
    side = rng.random(n) < left / (left + right)
    sample = np.where(side, -left, right) * np.abs(rng.standard_normal(n))
    fitted_shape, mean, left_var, right_var = aggd_fit(sample[None])[0]
    expected_mean = (right - left) * np.sqrt(2 / np.pi)  # (σr − σl) Γ(1)/Γ(1/2) · √(Γ(1/2)/Γ(3/2))
    assert fitted_shape == pytest.approx(2.0, abs=0.05) and mean == pytest.approx(expected_mean, rel=0.02)
    assert (left_var, right_var) == pytest.approx((left**2, right**2), rel=0.02)


def test_naturalness_features_tell_white_noise_from_smooth_texture():
    rng = np.random.default_rng(3)
    flat = np.full((1, 32, 32), 90.0)
    assert np.abs(mscn(flat)).max() < 1e-9
    noise = np.clip(128 + 30 * rng.standard_normal((4, 64, 64, 1)), 0, 255).repeat(3, 3).astype(np.uint8)
    smooth = np.stack([smooth_field(rng, 64, noise=2.0) for _ in range(4)])
    white, natural = naturalness_features(noise), naturalness_features(smooth)
    # column 3: mean of the products of horizontal neighbours. Subtracting the local mean makes neighbours of white
    # noise anti-correlated; a smooth field's stay positively correlated.
    assert white[:, 3].max() < -0.05 and natural[:, 3].min() > 0
    # column 0: shape of the normalised coefficients; self-normalised white noise is lighter-tailed than a Gaussian
    assert white[:, 0].min() > 2.5 > natural[:, 0].max()


def test_colour_features_see_independent_noise_per_channel():
    rng = np.random.default_rng(5)
    grey = rng.normal(128, 30, (4, 64, 64, 1))
    coupled = np.clip(np.concatenate([grey, grey * 0.9 + 10, grey * 0.8 + 20], 3), 0, 255).astype(np.uint8)
    independent = np.clip(rng.normal(128, 30, (4, 64, 64, 3)), 0, 255).astype(np.uint8)
    # columns 2–4: correlation of the channels' residuals at a coarse scale; columns 0–1: colour against luma
    assert colour_features(coupled)[:, 2:].min() > 0.95 > 0.5 > colour_features(independent)[:, 2:].max()
    assert colour_features(independent)[:, :2].min() > colour_features(coupled)[:, :2].max() + 3


def test_residual_features_see_the_upsampling_grid():
    real, fake = make_sets(8, size=32, seed=4)
    # columns 17, 18: sorted log energies of horizontal differences at the two phases of period 2
    spread_real = np.ptp(residual_features(np.stack(real))[:, 17:19], 1).mean()
    spread_fake = np.ptp(residual_features(np.stack(fake))[:, 17:19], 1).mean()
    assert spread_fake > 2 + spread_real  # nearest ×2 up-sampling: no change inside a 2×2 block


def test_grid_peaks_name_the_period_of_a_periodic_trace_at_any_phase():
    rng = np.random.default_rng(8)
    # kept off 0 and 255: one-sided clipping would give the traces harmonics on other grids
    field = np.stack([smooth_field(rng, 72, noise=6.0) for _ in range(6)]) * 0.7 + 38.0
    x = np.arange(72)
    checker = 4.0 * (-1.0) ** (x[:, None] + x[None, :])  # a transposed convolution's ×2 checkerboard
    period4 = 4.0 * np.cos(np.pi / 2 * x)[None, :] * np.ones((72, 1))  # a ×4 grid across

    def peaks(images, offset=0):
        tiles = np.clip(images[:, offset : offset + 64, offset : offset + 64], 0, 255).astype(np.uint8)
        return residual_features(tiles)[:, -PEAK_WIDTH:]  # mean and largest height at periods 2, 4 and 8

    plain, with_checker = peaks(field), peaks(field + checker[..., None])
    with_period4 = peaks(field + period4[..., None])
    assert with_checker[:, 1].min() > plain[:, 1].max() + 3  # period 2
    assert with_period4[:, 3].min() > plain[:, 3].max() + 3  # period 4 ...
    assert np.abs(with_period4[:, 1] - plain[:, 1]).max() < 1.0  # ... and not period 2
    # the grid's phase moves nothing: the same trace one pixel over (one bin's power is noisy, so the means on bins
    # without a trace move by about 1)
    np.testing.assert_allclose(peaks(field + checker[..., None], 1)[:, 1], with_checker[:, 1], atol=1.0)


def test_tile_grid_reaches_every_edge():
    corners = tile_grid(100, 70, 32, 32)
    assert (0, 0) in corners and (68, 38) in corners
    assert tile_grid(32, 32, 32, 8) == [(0, 0)]


def test_probe_separates_and_round_trips(trained, tmp_path):
    real, fake = make_sets(20, size=64, seed=3)
    scores = trained.score(real + fake)
    assert roc_auc(np.r_[np.zeros(20), np.ones(20)], scores) > 0.95
    trained.save(tmp_path / "probe")
    loaded = load_detector(tmp_path / "probe")
    assert np.allclose(loaded.score(real[:4]), scores[:4])
    assert loaded.assess(fake[0]) == trained.assess(fake[0])
    assert "split conformal" in loaded.config.operating_point


def test_p_values_are_conformal(trained):
    fresh = make_sets(120, size=64, seed=7)[0]
    p_values = np.array([trained.assess(x)["p_value"] for x in fresh])  # the trace probe's
    assert ((p_values > 0) & (p_values <= 1)).all()
    # exchangeable real images: P(p <= a) <= a, up to sampling error on 120 images
    for level in (0.05, 0.2, 0.5):
        assert np.mean(p_values <= level) <= level + 0.1
    assert np.mean(p_values <= 0.01) <= 0.05
    fakes = make_sets(20, size=64, seed=8)[1]
    answers = [trained.assess(x) for x in fakes]
    assert sum(a["p_value"] <= 0.01 for a in answers) >= 18
    assert not any(a["verdict"] == "real" for a in answers)


def test_conformal_p_values_and_thresholds_agree():
    calibration = np.sort(np.random.default_rng(0).normal(size=199))
    for p in (0.01, 0.05, 0.5):
        threshold = value_at_p(calibration, p)
        assert conformal_p(calibration, threshold) <= p < conformal_p(calibration, threshold - 1e-6)
    assert conformal_p(calibration, 10.0) == 1 / 200 and conformal_p(calibration, -10.0) == 1.0
    assert value_at_p(calibration, 0.001) == np.inf  # below 1 / (n + 1): no statistic reaches it


def test_two_means_splits_two_groups():
    values = np.r_[np.zeros(50), np.full(30, 4.0)] + np.random.default_rng(0).normal(0, 0.1, 80)
    split, low, high = two_means(values)
    assert 1 < split < 3 and abs(low) < 0.1 and abs(high - 4) < 0.1


def test_images_unlike_the_calibration_set_are_outside_the_domain(trained):
    rng = np.random.default_rng(0)
    flat = np.full((64, 64, 3), 128, np.uint8)  # no texture at all: a residual energy never seen in calibration
    noisy = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for image in (flat, noisy):
        answer = trained.assess(image)
        assert answer["verdict"] == "outside calibrated domain" and not answer["in_domain"]
        assert "robust s.d." in answer["domain_detail"]
    assert trained.assess(smooth_field(rng, 64))["in_domain"]


def test_localisation_finds_a_synthetic_region(trained):
    rng = np.random.default_rng(5)
    image = smooth_field(rng, 128)
    image[:, 64:] = upsampled_noise(rng, 128)[:, 64:]
    probability = trained.localize(image, stride=16)
    assert probability.shape == (128, 128) and probability.dtype == np.float32
    truth = np.zeros((128, 128), bool)
    truth[:, 64:] = True
    predicted = probability > 0.5
    assert (predicted & truth).sum() / (predicted | truth).sum() > 0.6


@pytest.mark.parametrize("seed", range(len(EVERYDAY) * 2))
def test_everyday_processing_keeps_a_usable_image(seed):
    image = smooth_field(np.random.default_rng(seed), 96)
    processed, name = everyday_processing(image, np.random.default_rng(seed), min_size=64)
    assert processed.dtype == np.uint8 and processed.ndim == 3 and processed.shape[2] == 3
    assert min(processed.shape[:2]) >= 64 and name


def test_localize_command_writes_mask_and_map(trained, tmp_path, capsys):
    from terrasynth.cli import main

    trained.save(tmp_path / "probe")
    rng = np.random.default_rng(6)
    image = smooth_field(rng, 96)
    Image.fromarray(image).save(tmp_path / "tile.png")
    code = main(["detect", "localize", str(tmp_path / "tile.png"), "--out", str(tmp_path / "mask.png"),
                 "--detector", str(tmp_path / "probe")])  # fmt: skip
    assert code == 0
    for name in ("mask.png", "mask-probability.png"):
        assert Image.open(tmp_path / name).size == (96, 96)
    assert set(np.unique(np.asarray(Image.open(tmp_path / "mask.png")))) <= {0, 255}
    assert "of the pixels synthetic" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case",
    ["not-an-image", "missing", "no-folder", "exists", "spectral", "1x1", "20000x20000", "truncated"],
)
def test_localize_command_refuses_bad_input(trained, tmp_path, capsys, case):
    from terrasynth.cli import main

    trained.save(tmp_path / "probe")
    Image.fromarray(smooth_field(np.random.default_rng(0), 64)).save(tmp_path / "tile.png")
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "taken.png").write_bytes(b"")
    image, out, detector = tmp_path / "tile.png", tmp_path / "mask.png", tmp_path / "probe"
    if case == "not-an-image":
        image = tmp_path / "notes.png"
    elif case == "missing":
        image = tmp_path / "nothing.png"
    elif case == "no-folder":
        out = tmp_path / "absent" / "mask.png"
    elif case == "exists":
        out = tmp_path / "taken.png"
    elif case == "1x1":
        image = tmp_path / "dot.png"
        Image.new("RGB", (1, 1)).save(image)
    elif case == "20000x20000":
        image = tmp_path / "huge.png"
        image.write_bytes(png_header(20000, 20000))
    elif case == "truncated":
        image = tmp_path / "cut.png"
        image.write_bytes((tmp_path / "tile.png").read_bytes()[:300])
    elif case == "spectral":
        real, fake = make_sets(8)
        build_detector(DetectorConfig(input_size=32, bins=16)).fit(real, fake).save(tmp_path / "spectral")
        detector = tmp_path / "spectral"
    before = sorted(p.name for p in tmp_path.iterdir())
    started = time.perf_counter()
    code = main(["detect", "localize", str(image), "--out", str(out), "--detector", str(detector)])
    assert time.perf_counter() - started < 30  # refused from the header, never decoded
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_shrunk_copies_never_train_the_trace_probe():
    from sklearn.linear_model import LogisticRegression

    real, fake = make_sets(12, size=32, seed=9)
    features = tile_features(np.stack(real + fake))
    labels = np.r_[np.zeros(12), np.ones(12)]
    shrunk = np.zeros(24, bool)
    shrunk[::3] = True
    probe = build_detector(config()).fit_features(features, labels, shrunk)
    everything = build_detector(config()).fit_features(features, labels)
    z = (features - probe.mean) / probe.scale
    reference = LogisticRegression(C=config().probe_c, max_iter=3000, class_weight="balanced")
    reference.fit(z[~shrunk][:, TRACE_COLUMNS], labels[~shrunk])
    assert np.allclose(probe.trace_coef, reference.coef_[0], atol=1e-6)
    assert np.allclose(probe.content_coef, everything.content_coef)
    assert np.allclose(probe.forensic_coef, everything.forensic_coef)
    assert not np.allclose(probe.trace_coef, everything.trace_coef, atol=1e-3)


def other_source(n: int, seed: int) -> list[np.ndarray]:
    """Genuine tiles of another sensor: finer structure and heavier noise than the training tiles."""
    rng = np.random.default_rng(seed)
    return [smooth_field(rng, 64, noise=14.0, cell=4) for _ in range(n)]


def test_calibrate_command_sets_p_values_on_a_new_source_without_retraining(trained, tmp_path, capsys):
    trained.save(tmp_path / "probe")
    write_set(tmp_path / "region", other_source(60, seed=11))
    code = main(["detect", "calibrate", "--real", str(tmp_path / "region"), "--detector", str(tmp_path / "probe"),
                 "--out", str(tmp_path / "calibrated")])  # fmt: skip
    assert code == 0 and "recalibrated on 60 genuine images" in capsys.readouterr().out
    calibrated = load_detector(tmp_path / "calibrated")
    assert calibrated.config.trained_on["calibration_images"] == 60
    for name in ("trace_coef", "forensic_coef", "content_coef", "mean", "scale"):  # the probes are not retrained
        assert np.array_equal(getattr(calibrated, name), getattr(trained, name))
    assert len(calibrated.trace_calibration) == 120  # each image clean and after an everyday edit
    fresh = other_source(100, seed=12)
    before = np.array([trained.assess(x)["content_p_value"] for x in fresh])
    after = np.array([calibrated.assess(x)["content_p_value"] for x in fresh])
    # against the training source's calibration the new sensor looks unusual; against its own, p-values are valid
    assert np.mean(before <= 0.2) > 0.4
    assert np.mean(after <= 0.2) <= 0.3 and np.mean(after <= 0.05) <= 0.12
    # scan says which imagery its p-values describe
    notes = {"probe": "terrasynth detect calibrate", "calibrated": "60 genuine"}
    for detector, note in ((tmp_path / name, note) for name, note in notes.items()):
        assert main(["detect", "scan", str(tmp_path / "region"), "--detector", str(detector),
                     "--out", str(tmp_path / f"{detector.name}.csv")]) == 0  # fmt: skip
        assert note in capsys.readouterr().out


def test_calibrate_command_refuses_too_few_images_before_loading(tmp_path, capsys):
    write_set(tmp_path / "region", other_source(10, seed=11))
    code = main(["detect", "calibrate", "--real", str(tmp_path / "region"), "--out", str(tmp_path / "calibrated")])
    assert code == 2
    err = capsys.readouterr().err
    assert "region" in err and "at least 50 genuine images" in err and not (tmp_path / "calibrated").exists()
    # enough files, but not enough that decode: refused after reading, before the detector is loaded or written
    write_set(tmp_path / "mixed", other_source(48, seed=11))
    for index in range(5):
        (tmp_path / "mixed" / f"broken-{index}.png").write_bytes(b"not a png")
    code = main(["detect", "calibrate", "--real", str(tmp_path / "mixed"), "--out", str(tmp_path / "calibrated")])
    assert code == 2 and "only 48 readable images" in capsys.readouterr().err
    assert not (tmp_path / "calibrated").exists()


def test_boosted_forensic_probe_separates_and_round_trips(tmp_path):
    real, fake = make_sets(40, size=64, seed=1)
    detector = build_detector(config(forensic_probe="boosted")).fit(real, fake)
    detector.calibrate(make_sets(60, size=64, seed=2)[0])
    assert detector.forensic_trees is not None and not detector.forensic_coef.any()
    test_real, test_fake = make_sets(20, size=64, seed=3)
    forensic = [detector.assess(x)["probe_logits"]["forensic"] for x in test_real + test_fake]
    assert roc_auc(np.r_[np.zeros(20), np.ones(20)], np.array(forensic)) > 0.95
    detector.save(tmp_path / "boosted")
    loaded = load_detector(tmp_path / "boosted")
    assert loaded.config.forensic_probe == "boosted"
    assert loaded.assess(test_fake[0]) == detector.assess(test_fake[0])
    # a file whose trees read columns the features do not have is refused in one line, before any scoring
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "boosted" / "model.safetensors"))
    state["forensic_trees.feature"] = state["forensic_trees.feature"] + 10_000
    save_file(state, str(tmp_path / "boosted" / "model.safetensors"))
    with pytest.raises(InputError, match="cannot load detector weights"):
        load_detector(tmp_path / "boosted")
    # a linear detector keeps no trees
    linear = build_detector(config()).fit_features(*_features_and_labels(real[:8], fake[:8]))
    assert linear.forensic_trees is None and linear.forensic_coef.any()


def _features_and_labels(real, fake):
    features = np.concatenate([tile_features(np.stack(build_detector(config()).tiles(x))) for x in real + fake])
    per_image = len(build_detector(config()).tiles(real[0]))
    return features, np.repeat(np.r_[np.zeros(len(real)), np.ones(len(fake))], per_image)


def test_unknown_forensic_probe_is_refused():
    with pytest.raises(ValueError, match="forensic_probe"):
        config(forensic_probe="forest")


def test_a_probe_detector_saved_before_the_boosted_option_loads_as_linear(trained, tmp_path):
    import json

    trained.save(tmp_path / "old")
    settings = json.loads((tmp_path / "old" / "detector.json").read_text())
    del settings["forensic_probe"]
    (tmp_path / "old" / "detector.json").write_text(json.dumps(settings))
    loaded = load_detector(tmp_path / "old")
    assert loaded.config.forensic_probe == "linear" and loaded.forensic_trees is None
    fake = make_sets(2, size=64, seed=5)[1][0]
    assert loaded.assess(fake) == trained.assess(fake)


def test_verdicts_name_their_evidence(trained, tmp_path, monkeypatch):
    from terrasynth.detect.scan import scan_files

    real = make_sets(6, size=64, seed=8)[0]
    answers = [trained.assess(x) for x in real]
    assert answers[0]["verdict"] == "real" and all("evidence" not in a for a in answers if a["verdict"] == "real")
    features = trained.image_features(real[0])
    stats = trained.statistics(features)
    # traces past every calibration image: synthetic, and the scan's detail column says why
    monkeypatch.setattr(trained, "statistics", lambda _: {**stats, "trace": 50.0})
    answer = trained.assess_features(features)
    assert answer["verdict"] == "synthetic" and "trace probe p =" in answer["evidence"]
    Image.fromarray(real[0]).save(tmp_path / "tile.png")
    (row,) = scan_files(trained, [tmp_path / "tile.png"])
    assert row["verdict"] == "synthetic" and row["detail"].startswith("up-sampling or re-sampling traces")
    # no traces, but local statistics far from every calibration image: uncertain, and it says which probe
    monkeypatch.setattr(trained, "statistics", lambda _: {**stats, "trace": -10.0, "forensic": 50.0, "content": -10.0})
    answer = trained.assess_features(features)
    assert answer["verdict"] == "uncertain"
    assert answer["evidence"].startswith("local pixel statistics") and "no up-sampling traces" in answer["evidence"]


def test_the_score_ranks_by_all_three_probes_and_decides_nothing(trained):
    """The score is the largest of the three probes' standardised logits (as a probability); the verdict's statistic
    is still the forensic and content probes' alone."""
    real, fake = make_sets(6, size=64, seed=5)
    checked = 0
    for image in real + fake:
        features = trained.image_features(image)
        result = trained.assess_features(features)
        stats = trained.statistics(features)
        assert trained.joint(stats) == max(stats["forensic"], stats["content"])
        if result["in_domain"]:
            expected = 1 / (1 + np.exp(-max(stats[name] for name in ("trace", "forensic", "content"))))
            assert result["score"] == pytest.approx(expected)
            assert trained.score([image])[0] == pytest.approx(expected)
            checked += 1
    assert checked >= 6


def test_trace_evidence_alone_raises_the_score(trained, monkeypatch):
    """Where only the trace probe speaks, the score follows it (before, it read the forensic and content probes
    alone, so a strong trace could sit beside a low score)."""
    image = make_sets(1, size=64, seed=6)[0][0]
    features = trained.image_features(image)
    stats = trained.statistics(features)
    quiet = max(stats["forensic"], stats["content"])
    monkeypatch.setattr(trained, "statistics", lambda f: {**stats, "trace": quiet + 4.0})
    result = trained.assess_features(features)
    assert result["in_domain"]
    assert result["score"] == pytest.approx(1 / (1 + np.exp(-(quiet + 4.0))))


def test_every_synthetic_verdict_scores_at_least_the_threshold(trained, monkeypatch):
    """The scan's threshold column is the trace probe's operating point on the score's scale: a *synthetic* verdict
    implies a score at or above it, whatever the other probes say (the converse need not hold)."""
    image = make_sets(1, size=64, seed=7)[0][0]
    features = trained.image_features(image)
    stats = trained.statistics(features)
    cut = value_at_p(trained.trace_calibration, trained.config.synthetic_p)
    for trace, others in ((cut + 1e-3, cut - 5.0), (cut + 2.0, cut + 4.0), (cut - 1.0, cut + 3.0)):
        changed = {**stats, "trace": trace, "forensic": others, "content": others - 1.0}
        monkeypatch.setattr(trained, "statistics", lambda f, changed=changed: changed)
        result = trained.assess_features(features)
        if result["verdict"] == "synthetic":
            assert result["score"] >= trained.config.threshold - 1e-9
        else:  # the third case: only the other probes are high, so the score passes the threshold without the verdict
            assert trace < cut and result["score"] > trained.config.threshold
