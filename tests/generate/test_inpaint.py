"""Inpainting: a masked region of a real tile redrawn, every other pixel kept bit for bit (watermark included);
provenance naming the mask; the same seed, the same image; bad masks refused naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.detect.fake_tiles import smooth_field
from tests.fake_models import FakeTextEncoder, save_tiny_model, tiny_model
from tests.fakes import random_mask, write_geotiff, write_mask_png

from terrasynth.errors import InputError
from terrasynth.files import file_sha256
from terrasynth.generate.api import GenerationRequest, LayoutSpec, OutputOptions, generate_images, read_inpaint_mask
from terrasynth.generate.pipeline import LayoutToImagePipeline, feather_inward
from terrasynth.generate.provenance import read_provenance
from terrasynth.generate.sampling import Sampling
from terrasynth.generate.schedulers import SCHEDULERS
from terrasynth.generate.watermark import read_watermark, record_payload


@pytest.fixture(scope="module")
def pipeline():
    return LayoutToImagePipeline(tiny_model(seed=1), text_encoder=FakeTextEncoder())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=2)


def write_tile(folder, size: int = 32, box=(8, 24, 4, 20), natural: bool = False):
    """(layout PNG, init image PNG, mask PNG, init pixels, bool mask): a random tile (white noise, or with
    ``natural`` a smooth field with fine noise, as aerial texture), white over rows box[0]:box[1] and columns
    box[2]:box[3] of the mask."""
    layout = write_mask_png(folder / "layout.png", random_mask(np.random.default_rng(0), size))
    if natural:
        pixels = smooth_field(np.random.default_rng(1), size, noise=2.0, cell=16)
    else:
        pixels = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "tile.png")
    redraw = np.zeros((size, size), bool)
    redraw[box[0] : box[1], box[2] : box[3]] = True
    Image.fromarray(redraw.astype(np.uint8) * 255).save(folder / "edit.png")
    return layout, folder / "tile.png", folder / "edit.png", pixels, redraw


def generate(model_dir, layout, out, init_image, inpaint_mask, num_images=2, seed=0, steps=3):
    request = GenerationRequest(layout=LayoutSpec(layout), init_image=init_image, inpaint_mask=inpaint_mask)
    return generate_images(model_dir, request, Sampling(steps=steps), OutputOptions(out), seed, num_images)


def inpaint(model_dir, folder, out, **kwargs):
    layout, tile, mask = folder / "layout.png", folder / "tile.png", folder / "edit.png"
    return generate(model_dir, layout, out, tile, mask, **kwargs)


def pixels_of(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_pixels_outside_the_mask_are_the_init_image_bit_for_bit_in_the_written_png(model_dir, tmp_path):
    *_, init, redraw = write_tile(tmp_path)
    written = inpaint(model_dir, tmp_path, tmp_path / "out")
    assert [p.suffix for p in written] == [".png", ".png"]
    for path in written:
        image = pixels_of(path)
        assert image.shape == init.shape
        assert np.array_equal(image[~redraw], init[~redraw])
        assert (image[redraw] != init[redraw]).any(-1).mean() > 0.9  # the region is redrawn
        assert read_provenance(path).watermark is not None


def test_provenance_names_the_mask_its_area_and_the_init_image(model_dir, tmp_path):
    _, tile, mask, _, redraw = write_tile(tmp_path)
    record = read_provenance(inpaint(model_dir, tmp_path, tmp_path / "out", num_images=1)[0])
    assert record.synthetic and (record.width, record.height) == (32, 32)
    assert record.extra["inpaint_mask_sha256"] == file_sha256(mask)
    assert record.extra["inpaint_area"] == pytest.approx(redraw.mean(), abs=1e-6) == 0.25
    assert record.extra["init_image_sha256"] == file_sha256(tile)
    assert record.extra["strength"] == 1.0  # inpainting draws the region from noise by default


def test_the_same_seed_gives_the_same_image_and_another_seed_another(model_dir, tmp_path):
    *_, redraw = write_tile(tmp_path)
    first = [pixels_of(p) for p in inpaint(model_dir, tmp_path, tmp_path / "a")]
    again = [pixels_of(p) for p in inpaint(model_dir, tmp_path, tmp_path / "b")]
    other = [pixels_of(p) for p in inpaint(model_dir, tmp_path, tmp_path / "c", seed=5)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0][redraw], other[0][redraw])


def test_a_georeferenced_layout_gives_a_geotiff_on_its_grid_with_the_kept_pixels_exact(model_dir, tmp_path):
    import rasterio

    _, tile, mask, init, redraw = write_tile(tmp_path)
    layout = write_geotiff(tmp_path / "layout.tif", random_mask(np.random.default_rng(3), 32))
    (path,) = generate(model_dir, layout, tmp_path / "out", tile, mask, num_images=1, steps=2)
    assert path.suffix == ".tif"
    with rasterio.open(path) as written, rasterio.open(layout) as source:
        assert written.crs == source.crs and written.transform == source.transform
        image = np.moveaxis(written.read(), 0, -1)
    assert np.array_equal(image[~redraw], init[~redraw])


def test_a_mask_too_small_to_carry_the_watermark_is_recorded_and_no_kept_pixel_changes(model_dir, tmp_path):
    *_, init, redraw = write_tile(tmp_path, box=(10, 14, 10, 14))
    (path,) = inpaint(model_dir, tmp_path, tmp_path / "out", num_images=1)
    record = read_provenance(path)
    assert record.watermark == "none" and "smaller than 16 px" in record.extra["watermark_skipped"]
    assert np.array_equal(pixels_of(path)[~redraw], init[~redraw])


def test_the_watermark_reads_back_from_an_inpainted_region(model_dir, tmp_path):
    *_, init, redraw = write_tile(tmp_path, size=256, box=(0, 256, 0, 128), natural=True)
    (path,) = inpaint(model_dir, tmp_path, tmp_path / "out", num_images=1)
    image, record = pixels_of(path), read_provenance(path)
    assert np.array_equal(image[~redraw], init[~redraw])
    assert record.watermark.startswith("ts-sync-v2:")
    reading = read_watermark(image)
    assert reading.valid and reading.payload == record_payload(record)


def test_a_region_too_narrow_for_the_mark_is_left_unmarked_and_recorded(model_dir, tmp_path):
    *_, init, redraw = write_tile(tmp_path, size=64, box=(0, 64, 0, 26), natural=True)
    (path,) = inpaint(model_dir, tmp_path, tmp_path / "out", num_images=1)
    record = read_provenance(path)
    assert np.array_equal(pixels_of(path)[~redraw], init[~redraw])
    assert record.watermark == "none" and "narrower than 128 px" in record.extra["watermark_skipped"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("size", "the mask is 24×32 but the init image"),
        ("empty", "all zero"),
        ("full", "covers the whole image"),
        ("text", "cannot read image"),
        ("missing", "not found"),
        ("no-init", "--inpaint-mask needs --init-image"),
        ("layout", "the layout is 16×16 but the init image"),
    ],
)
def test_bad_masks_are_refused_naming_the_file_before_anything_is_written(model_dir, tmp_path, change, problem):
    layout, tile, mask, _, redraw = write_tile(tmp_path)
    if change == "size":
        Image.fromarray(redraw[:, :24].astype(np.uint8) * 255).save(mask)
    elif change in ("empty", "full"):
        Image.fromarray(np.full((32, 32), 0 if change == "empty" else 255, np.uint8)).save(mask)
    elif change == "text":
        mask.write_text("not an image")
    elif change == "missing":
        mask.unlink()
    elif change == "layout":
        layout = write_mask_png(tmp_path / "small.png", random_mask(np.random.default_rng(0), 16))
    with pytest.raises(InputError, match=problem) as error:
        generate(model_dir, layout, tmp_path / "out", None if change == "no-init" else tile, mask, steps=1)
    assert error.value.path == (layout if change == "layout" else mask)
    assert not (tmp_path / "out").exists()


def test_masks_are_read_as_nonzero_from_grey_palette_rgb_and_tiff(tmp_path):
    redraw = np.zeros((8, 8), bool)
    redraw[2:5, 3:7] = True
    grey = redraw.astype(np.uint8) * 255
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey, 0 * grey, 0 * grey], -1)).save(tmp_path / "rgb.png")
    write_mask_png(tmp_path / "palette.png", redraw.astype(np.uint8))  # index 0 has a (non-black) colour too
    write_geotiff(tmp_path / "band.tif", redraw.astype(np.uint8))
    for name in ("grey.png", "rgb.png", "palette.png", "band.tif"):
        assert np.array_equal(read_inpaint_mask(tmp_path / name), redraw), name
    Image.fromarray(grey).save(tmp_path / "mask.jpg")
    with pytest.raises(InputError, match="JPEG"):
        read_inpaint_mask(tmp_path / "mask.jpg")


# The pipeline argument: batches of masks as tensors, no files ---------------------------------------------------


def test_the_pipeline_inpaints_a_batch_with_one_mask_per_image(pipeline):
    layout = torch.randint(0, 5, (32, 32), generator=torch.Generator().manual_seed(0))
    init = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    init = (init * 255).round() / 255  # 8-bit values, as read from a file
    masks = torch.zeros(3, 1, 32, 32)
    masks[0, :, :16], masks[1, :, :, 16:], masks[2, :, 5:20, 7:30] = 1, 1, 1
    kwargs = {"layout": layout, "num_images": 3, "num_inference_steps": 3, "seed": 0}
    out = pipeline("", init_image=init, inpaint_mask=masks, **kwargs).images
    assert out.shape == (3, 3, 32, 32) and torch.isfinite(out).all()
    keep = (masks == 0).expand(-1, 3, -1, -1)
    assert torch.equal(out[keep], init[keep])
    assert (out[~keep] != init[~keep]).float().mean() > 0.9
    # In latents, everything outside the (dilated) latent mask ends as the init image's encoding.
    latents = pipeline("", init_image=init, inpaint_mask=masks, output_type="latent", **kwargs).images
    encoded = pipeline.encode_init_image(init, (32, 32))
    outside = pipeline.latent_mask(masks, (32, 32)).expand_as(latents) == 0
    assert outside.any() and torch.equal(latents[outside], encoded[outside])


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_inpainting_works_with_every_scheduler_and_strength(pipeline, scheduler):
    init = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(32, 32)
    mask[4:20, 4:20] = 1
    for strength in (1.0, 0.5):
        out = pipeline(
            "",
            init_image=init,
            inpaint_mask=mask,
            scheduler=scheduler,
            num_inference_steps=4,
            seed=0,
            strength=strength,
        ).images
        assert torch.isfinite(out).all() and torch.equal(out[0][:, mask == 0], init[:, mask == 0])


def test_bad_pipeline_inputs_are_refused(pipeline):
    init, mask = torch.rand(3, 32, 32), torch.ones(32, 32)
    with pytest.raises(ValueError, match="inpaint_mask needs init_image"):
        pipeline("", inpaint_mask=mask, num_inference_steps=1)
    with pytest.raises(ValueError, match="inpaint_mask must be"):
        pipeline("", init_image=init, inpaint_mask=mask[:16], num_inference_steps=1)
    with pytest.raises(ValueError, match="2 inpaint_masks for 3 images"):
        pipeline("", init_image=init, inpaint_mask=mask.expand(2, 1, 32, 32), num_images=3, num_inference_steps=1)


def test_the_feather_stays_inside_the_mask():
    redraw = torch.zeros(1, 1, 40, 40)
    redraw[..., 5:35, 0:30] = 1  # touches the left border of the image
    soft = feather_inward(redraw, 8)
    assert torch.equal(soft[redraw == 0], torch.zeros(int((redraw == 0).sum())))
    assert soft[0, 0, 20, 10] == 1 and soft[0, 0, 20, 0] == 1  # deep inside; on the image border, no seam
    assert soft[0, 0, 5, 10] == pytest.approx(1 / 8) and soft[0, 0, 8, 10] == pytest.approx(4 / 8)
