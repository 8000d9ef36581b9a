"""Layouts over the working size: windows cover the scene with weights summing to one, the working-size path is
untouched, a 2× layout runs nine windows a step, blended window edges are no rougher than elsewhere, and a GeoTIFF
layout's georeference reaches the output."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from tests.fake_models import FakeTextEncoder, save_tiny_model, tiny_model

import terrasynth.generate.multidiffusion as multidiffusion
from terrasynth.cli import main
from terrasynth.config import load_config
from terrasynth.generate.multidiffusion import (
    Windows,
    decode_in_windows,
    layout_channels_in_strips,
    scene_windows,
    window_starts,
)
from terrasynth.generate.pipeline import LayoutToImagePipeline
from terrasynth.generate.provenance import read_provenance
from terrasynth.models.embedded import MODEL_CONFIG_NAME, EmbeddedModelConfig
from terrasynth.models.mean_prior import LatentMeanPrior, MeanPriorConfig
from terrasynth.models.registry import shipped_model_path


def prior_pipeline(sample_size: int = 256) -> LayoutToImagePipeline:
    """The tiny model with a mean prior (one water tile, one woodland tile) and working size ``sample_size``."""
    shares = torch.tensor([[0.0, 0, 0, 1, 0], [0.0, 0, 1, 0, 0]])
    means = torch.tensor([[0.5, -0.2, 0.1, 0.3], [-0.4, 0.2, 0.0, -0.1]])
    config = MeanPriorConfig(neighbours=1, start=0.9)
    model = tiny_model(seed=1, rescale_betas_zero_snr=True, mean_prior=config, sample_size=sample_size)
    model.mean_prior = LatentMeanPrior(shares, means)
    return LayoutToImagePipeline(model, text_encoder=FakeTextEncoder())


def blocky_layout(side: int, seed: int = 0) -> torch.Tensor:
    """A side × side layout of 8-px class blocks."""
    blocks = torch.randint(0, 5, (side // 8, side // 8), generator=torch.Generator().manual_seed(seed))
    return blocks.repeat_interleave(8, 0).repeat_interleave(8, 1)


def spy(monkeypatch, obj, name: str) -> list:
    """Record the arguments of every call of ``obj.name``."""
    calls, original = [], getattr(obj, name)

    def recorded(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, recorded)
    return calls


@pytest.mark.parametrize(
    "size, window, overlap",
    [((16, 16), 8, 0.25), ((20, 33), 8, 0.25), ((9, 100), 16, 0.5), ((64, 64), 64, 0.25), ((130, 70), 64, 0.25)],
)
def test_windows_cover_every_cell_and_their_weights_sum_to_one(size, window, overlap):
    windows = Windows.cover(size, window, overlap)
    covered = torch.zeros(size, dtype=torch.int)
    for corner in windows.corners:
        rows, cols = windows.box(corner)
        assert rows.stop <= size[0] and cols.stop <= size[1]
        assert (rows.stop - rows.start, cols.stop - cols.start) == windows.window
        covered[rows, cols] += 1
    assert covered.min() >= 1
    for length, side in zip(size, windows.window):
        starts = window_starts(length, side, overlap)
        assert starts[0] == 0 and starts[-1] + side == length
        assert all(0 < b - a <= side * (1 - overlap) for a, b in zip(starts, starts[1:]))  # overlap kept
    for scale in (1, 4):  # ``compute`` gets a window's cells and returns its values at ``scale`` (as decoding)
        like = torch.zeros(2, 3, 1, 1)
        # The normalised weights of the windows over each cell sum to one...
        window = (2, 3, windows.window[0] * scale, windows.window[1] * scale)
        ones = windows.fuse(lambda box, window=window: torch.ones(window), like, scale)
        assert ones.shape == (2, 3, size[0] * scale, size[1] * scale)
        assert torch.allclose(ones, torch.ones_like(ones), atol=1e-6)
        # ... so windows that agree are fused into exactly what they agree on.
        field = torch.randn(2, 3, size[0] * scale, size[1] * scale)

        def crop(box, field=field, scale=scale):
            return field[..., box[0].start * scale : box[0].stop * scale, box[1].start * scale : box[1].stop * scale]

        assert torch.allclose(windows.fuse(crop, like, scale), field, atol=1e-5)


def test_a_layout_of_exactly_the_working_size_is_sampled_whole_and_unchanged(monkeypatch):
    layout = blocky_layout(16)
    windowed, reference = prior_pipeline(sample_size=16), prior_pipeline()  # same weights, working size 16 vs 256
    assert scene_windows(windowed.model.config, (8, 8)) is None
    calls = spy(monkeypatch, windowed.model, "predict")
    kwargs = {"layout": layout, "num_images": 2, "num_inference_steps": 3, "seed": 4, "guidance_rescale": 0.5}
    out = windowed("a lake", **kwargs)
    assert len(calls) == 2 and all(tuple(c[0].shape[-2:]) == (8, 8) for c in calls)  # one whole-tile call a step
    expected = reference("a lake", **kwargs)
    assert out.mean_prior_draws == expected.mean_prior_draws is not None
    assert torch.equal(out.images, expected.images)


def test_a_layout_twice_the_working_size_runs_nine_windows_a_step(monkeypatch):
    pipeline = prior_pipeline(sample_size=16)  # 16 px: 8×8 latents a window
    windows = scene_windows(pipeline.model.config, (16, 16))
    assert len(windows) == 9 and windows.window == (8, 8)
    predicted = spy(monkeypatch, pipeline.model, "predict")
    decoded = spy(monkeypatch, pipeline.model, "decode_latents")
    out = pipeline("a lake", layout=blocky_layout(32), num_inference_steps=3, seed=0)
    steps = {int(call[1][0]) for call in predicted}
    assert len(steps) == 2  # the mean prior starts at the second of 3 steps
    assert len(predicted) == 9 * len(steps)
    # Peak: one window at a time, guided (conditional and unconditional in one batch of 2).
    assert {tuple(call[0].shape) for call in predicted} == {(2, 4, 8, 8)}
    assert {tuple(call[2].shape) for call in predicted} == {(2, 6, 8, 8)}  # the window's own layout channels
    assert len(decoded) == 9 and {tuple(call[0].shape) for call in decoded} == {(1, 4, 8, 8)}
    assert out.images.shape == (1, 3, 32, 32) and torch.isfinite(out.images).all()
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert out.mean_prior_draws is not None
    again = pipeline("a lake", layout=blocky_layout(32), num_inference_steps=3, seed=0)
    assert torch.equal(again.images, out.images)


def test_layout_channels_made_in_strips_are_those_of_the_whole_layout(monkeypatch):
    model = tiny_model()
    monkeypatch.setattr(multidiffusion, "LAYOUT_STRIP_ROWS", 5)  # 5 latent rows a strip: 3 strips, the last short
    layout = torch.randint(0, 5, (2, 24, 40), generator=torch.Generator().manual_seed(0))
    whole = model.layout_channels(layout, 2, (12, 20))
    assert torch.equal(layout_channels_in_strips(model, layout, 2, (12, 20)), whole)


def window_edge_steps(image: torch.Tensor, windows: Windows, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean absolute differences between neighbouring columns (averaged over rows and channels): those across
    a window's first or last column inside the scene, and all others."""
    width = windows.size[1]
    edges = {c * scale for _, c in windows.corners} | {(c + windows.window[1]) * scale for _, c in windows.corners}
    steps = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1, 2))  # steps[i]: column i to i + 1
    at_edge = torch.zeros(len(steps), dtype=torch.bool)
    at_edge[[e - 1 for e in edges if 0 < e < width * scale]] = True
    return steps[at_edge], steps[~at_edge]


def test_window_edges_are_no_rougher_than_elsewhere_in_fused_predictions_and_decoded_images(monkeypatch):
    """Bound: the mean step across window edges is at most the mean step elsewhere. Per-window constant
    predictions (the worst disagreement between windows) fuse into ramps whose steps at the edges are the
    smallest; the tiny decoder's border effects (zero padding, per-window GroupNorm) are blended away. Windows
    stitched with a flat weight, or not overlapped at all, break the bound (the test can see seams)."""
    windows = Windows.cover((32, 32), 16)
    constants = dict(zip(windows.corners, torch.randn(len(windows))))

    def per_window(box):
        return constants[(box[0].start, box[1].start)].expand(1, 1, 16, 16)

    fused = windows.fuse(per_window, torch.zeros(1, 1, 1, 1))
    at_edges, elsewhere = window_edge_steps(fused, windows, 1)
    assert at_edges.max() <= elsewhere.max()
    with monkeypatch.context() as patch:
        patch.setattr(multidiffusion, "window_profile", torch.ones)
        flat_edges, flat_elsewhere = window_edge_steps(windows.fuse(per_window, torch.zeros(1, 1, 1, 1)), windows, 1)
        assert flat_edges.max() > flat_elsewhere.max()

    model = tiny_model(seed=1, sample_size=32)  # 16×16 latent windows, 2× down-sampling
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    latents = 2 * torch.stack([cols, rows, cols * rows, torch.sin(3 * cols)])[None]  # smooth: any seam shows
    with torch.no_grad():
        image = decode_in_windows(model, latents, windows)
        at_edges, elsewhere = window_edge_steps(image, windows, 2)
        assert at_edges.mean() <= elsewhere.mean()
        stitched = torch.zeros_like(image)
        for y in range(0, 32, 16):
            for x in range(0, 32, 16):
                stitched[..., 2 * y : 2 * y + 32, 2 * x : 2 * x + 32] = model.decode_latents(
                    latents[..., y : y + 16, x : x + 16]
                )
        seams, rest = window_edge_steps(stitched, Windows.cover((32, 32), 16, 0.0), 2)
        assert seams.mean() > 2 * rest.mean()


def test_a_georeferenced_layout_over_the_working_size_keeps_its_georeference(tmp_path, monkeypatch):
    monkeypatch.setattr("terrasynth.models.text.default_text_encoder", lambda: FakeTextEncoder())
    model_dir = save_tiny_model(tmp_path / "tiny", seed=2, sample_size=16)
    transform = from_origin(380000.0, 5600000.0, 0.5, 0.5)
    layout = tmp_path / "scene.tif"
    classes = np.random.default_rng(0).integers(0, 5, (24, 40)).astype(np.uint8)
    profile = {"driver": "GTiff", "height": 24, "width": 40, "count": 1, "dtype": "uint8", "crs": "EPSG:32634"}
    with rasterio.open(layout, "w", transform=transform, **profile) as dst:
        dst.write(classes, 1)
    out = tmp_path / "out"
    argv = ["generate", "--model", model_dir, "--layout", layout, "--n", "1", "--steps", "2", "--out", out, "-q"]
    calls = spy(monkeypatch, LayoutToImagePipeline, "predict")
    assert main([str(a) for a in argv]) == 0
    assert len(calls) == 2 * 6  # 24×40 px: 12×20 latents in 2 × 3 windows of 8×8, at each of 2 steps
    with rasterio.open(out / "scene-000.tif") as src:
        assert src.crs.to_epsg() == 32634
        assert src.transform.almost_equals(transform)
        assert (src.height, src.width, src.count) == (24, 40, 3)
    record = read_provenance(out / "scene-000.tif")
    assert record.layout_source == str(layout) and record.watermark not in (None, "none")


def test_the_working_size_is_part_of_the_model_config():
    shipped = load_config(EmbeddedModelConfig, shipped_model_path() / MODEL_CONFIG_NAME)  # saved without the key
    assert shipped.sample_size == 256 and shipped.sample_size // shipped.downsampling == 64
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_model(sample_size=18)
