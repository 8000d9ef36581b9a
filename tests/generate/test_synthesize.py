"""``terrasynth synthesize``: layouts in, a labelled dataset out, read back by ``SyntheticTiles``; seeds per item,
so pixels do not depend on the batch; a killed run resumes with nothing lost, duplicated or partial; a bad layout
stops the run before anything is written, or with --skip-bad is listed and skipped."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from tests.fake_models import save_tiny_model
from tests.fakes import make_paired_tiles, random_mask, write_geotiff, write_mask_png

from terrasynth.cli import main
from terrasynth.data.images import read_georeference, read_mask
from terrasynth.data.synthetic_tiles import SyntheticTiles
from terrasynth.detect.detector import load_image_folders
from terrasynth.errors import InputError
from terrasynth.generate import synthesize as synth
from terrasynth.generate.provenance import read_provenance
from terrasynth.utility.inputs import generator_kind


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # No text encoder to load: the test checks files, seeds and resumption, not prompt understanding.
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=2, conditioning="none")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_paired_tiles(tmp_path_factory.mktemp("data") / "pairs", n=3, size=32)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def synthesize_args(source, model_dir, out, *extra):
    return ["synthesize", source, "--model", model_dir, "--out", out, "--steps", "2", "-q", *extra]


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def index_rows(out) -> list[dict]:
    with open(out / "index.csv", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_a_paired_dataset_becomes_a_labelled_dataset_read_back_by_synthetic_tiles(capsys, model_dir, pairs, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, *synthesize_args(pairs, model_dir, out, "--per-layout", "2"))
    assert code == 0, stderr
    assert "6 images written" in stdout and "images/s" in stdout and "model load" in stdout
    rows = index_rows(out)
    assert [r["id"] for r in rows] == [f"{i}-{k:03d}" for i in ("0000", "0001", "0002") for k in range(2)]
    assert set(synth.INDEX_COLUMNS) == set(rows[0])
    assert json.loads((out / "classes.json").read_text())["classes"]
    for row in rows:
        record = read_provenance(out / row["image"])
        assert record.synthetic and record.watermark not in (None, "none")  # marked as generate marks
        assert record.prompt == row["prompt"] and record.seed == int(row["seed"]) and record.steps == 2
        assert record.extra["synthesize"]["id"] == row["id"]
        source = read_mask(pairs / "masks" / f"{row['layout_id']}.png")
        assert torch.equal(read_mask(out / row["mask"]), source)  # the label is the layout the image came from
    assert len({r["seed"] for r in rows}) == 6
    data = SyntheticTiles(out)
    sample = data[1]
    assert len(data) == 6 and sample["id"] == "0000-001" and sample["image"].shape == (3, 32, 32)
    assert sample["layout"].dtype == torch.int64 and sample["caption"] == rows[1]["prompt"]
    assert sample["metadata"]["seed"] == int(rows[1]["seed"]) and sample["metadata"]["sampler"] == "dpm++sde"
    assert SyntheticTiles(out, checksum=True)[0]["id"] == "0000-000"
    with pytest.raises(InputError, match="index.csv"):
        SyntheticTiles(pairs)
    # Accepted as a fake set by detect train (its images, not its masks) and as --generator by utility segment.
    assert len(load_image_folders([out])) == 6
    assert generator_kind(out, "segment") == "synthesized"


def test_seeds_belong_to_items_so_pixels_do_not_depend_on_the_batch(model_dir, pairs, tmp_path):
    table = synth.input_class_table(pairs, None, model_dir)
    entries, _ = synth.read_layouts(pairs, table)
    items = synth.plan_items(entries, 2, seed=7)
    assert [i.seed for i in items] == [i.seed for i in synth.plan_items(entries, 2, seed=7)]
    assert items[0].seed != items[1].seed and items[0].seed != synth.plan_items(entries, 2, seed=8)[0].seed
    whole = synth.synthesize(model_dir, items, tmp_path / "whole", batch_size=6, watermark=False, progress=False)
    # Another batch size and another set of items alongside: the same pixels for the items both made.
    part = synth.synthesize(model_dir, items[::-2], tmp_path / "part", batch_size=1, watermark=False, progress=False)
    assert whole.written == 6 and part.written == 3
    for item in items[::-2]:
        a, b = (pixels(synth.image_path(tmp_path / name, item)) for name in ("whole", "part"))
        assert np.abs(a - b).max() <= 1, item.id  # the documented tolerance: 1/255


def test_a_killed_run_resumes_with_nothing_lost_duplicated_or_partial(model_dir, pairs, tmp_path, monkeypatch):
    table = synth.input_class_table(pairs, None, model_dir)
    entries, _ = synth.read_layouts(pairs, table)
    items = synth.plan_items(entries, 2, seed=0)
    out = tmp_path / "out"
    real_write = synth.write_generated
    calls = []

    def dies_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # killed mid-write: the mask is down, the image only a hidden temporary
            (out / "images" / ".0001-001.png.x1y2.tmp").write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(synth, "write_generated", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize(model_dir, items, out, batch_size=2, progress=False)
    monkeypatch.setattr(synth, "write_generated", real_write)
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "images").glob("*.png")}
    assert len(kept) == 3 and not (out / "index.csv").exists()
    result = synth.synthesize(model_dir, items, out, batch_size=2, progress=False)
    assert result.written == 3 and result.planned == 6
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == sorted(f"{i.id}.png" for i in items)  # none lost, none twice, no partial file left
    assert sorted(p.name for p in (out / "masks").iterdir()) == names
    assert all((out / "images" / n).stat().st_mtime_ns == t for n, t in kept.items())  # complete items kept
    assert [r["id"] for r in index_rows(out)] == [i.id for i in items]


def test_an_unreadable_layout_stops_the_run_naming_it_or_is_skipped_with_skip_bad(capsys, model_dir, tmp_path):
    folder = tmp_path / "layouts"
    for n in range(3):
        write_mask_png(folder / f"good{n}.png", random_mask(np.random.default_rng(n), 32))
    (folder / "bad.png").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, *synthesize_args(folder, model_dir, out))
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "bad.png" in stderr and "--skip-bad" in stderr
    assert not out.exists()
    code, stdout, stderr = run(capsys, *synthesize_args(folder, model_dir, out, "--skip-bad"))
    assert code == 0 and "3 images written" in stdout and "bad.png" in stderr
    with open(out / "skipped.csv", encoding="utf-8") as file:
        skipped = list(csv.DictReader(file))
    assert len(skipped) == 1 and skipped[0]["layout"].endswith("bad.png") and skipped[0]["problem"]
    assert [r["id"] for r in index_rows(out)] == ["good0-000", "good1-000", "good2-000"]


def test_layouts_too_small_or_too_large_are_bad_layouts(capsys, model_dir, tmp_path):
    folder = tmp_path / "layouts"
    write_mask_png(folder / "good.png", random_mask(np.random.default_rng(0), 32))
    write_mask_png(folder / "tiny.png", random_mask(np.random.default_rng(1), 8))  # under the 16-px watermark
    out = tmp_path / "out"
    code, _, stderr = run(capsys, *synthesize_args(folder, model_dir, out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "tiny.png" in stderr and "minimum side" in stderr and not out.exists()
    (folder / "tiny.png").unlink()
    write_mask_png(folder / "large.png", random_mask(np.random.default_rng(2), 48))
    code, _, stderr = run(capsys, *synthesize_args(folder, model_dir, out, "--max-pixels", str(40 * 40)))
    assert code == 2 and "large.png" in stderr and "--max-pixels" in stderr and not out.exists()
    code, stdout, stderr = run(capsys, *synthesize_args(folder, model_dir, out, "--max-pixels", "1600", "--skip-bad"))
    assert code == 0 and "1 images written" in stdout and "large.png" in stderr


def test_csv_rows_with_prompts_and_augmented_layouts(capsys, model_dir, tmp_path):
    mask = random_mask(np.random.default_rng(0), 32)
    mask[:4, :4] = 3  # an asymmetric corner, so flips and rotations move it
    write_mask_png(tmp_path / "a.png", mask)
    (tmp_path / "rows.csv").write_text("layout,prompt\na.png,aerial image of fields\na.png,aerial image of woods\n")
    (tmp_path / "swap.json").write_text(json.dumps({"woodland": "water"}))
    out = tmp_path / "out"
    extra = ("--augment", "flip", "rot90", "--class-swap", tmp_path / "swap.json", "--batch-size", "4")
    code, stdout, stderr = run(capsys, *synthesize_args(tmp_path / "rows.csv", model_dir, out, *extra))
    assert code == 0, stderr
    rows = {r["id"]: r for r in index_rows(out)}
    assert len(rows) == 2 * 7  # two rows × (as given, 2 flips, 3 rotations, a class swap)
    assert rows["a_row2-000"]["prompt"] == "aerial image of fields"
    assert rows["a_row3~hflip-000"]["prompt"] == "aerial image of woods"
    source = torch.from_numpy(mask).long()
    assert torch.equal(read_mask(out / rows["a_row2~hflip-000"]["mask"]), source.flip(-1))
    assert torch.equal(read_mask(out / rows["a_row2~rot90-000"]["mask"]), torch.rot90(source, 1, (-2, -1)))
    swapped = read_mask(out / rows["a_row2~swap-000"]["mask"])
    woodland, water = 2, 3  # LandCover.ai: background, building, woodland, water, road
    assert not (swapped == woodland).any() and torch.equal(swapped == water, (source == woodland) | (source == water))


def test_a_georeferenced_layout_gives_images_and_masks_on_its_grid(capsys, model_dir, tmp_path):
    layout = write_geotiff(tmp_path / "layouts" / "tile.tif", random_mask(np.random.default_rng(1), 32))
    out = tmp_path / "out"
    code, _, stderr = run(capsys, *synthesize_args(layout.parent, model_dir, out, "--augment", "flip"))
    assert code == 0, stderr
    source = read_georeference(layout)
    assert read_georeference(out / "images" / "tile-000.tif") == source
    assert read_georeference(out / "masks" / "tile-000.tif") == source
    assert (out / "images" / "tile~hflip-000.png").is_file()  # flipped: no longer on the source's grid


@pytest.mark.parametrize(
    ("extra", "problem"),
    [(("--strength", "0.5"), "--strength"), (("--per-layout", "0"), "--per-layout"), (("--batch-size", "0"), "batch")],
)
def test_bad_options_exit_2_before_anything_is_written(capsys, model_dir, pairs, tmp_path, extra, problem):
    code, stdout, stderr = run(capsys, *synthesize_args(pairs, model_dir, tmp_path / "out", *extra))
    assert code == 2 and stdout == "" and problem in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
