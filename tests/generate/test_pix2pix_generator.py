"""pix2pix as a generator: ``terrasynth generate --model <pix2pix folder>`` from a layout, with provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.fake_models import tiny_pix2pix_train_config
from tests.fakes import make_paired_tiles, random_mask, write_mask_png

from terrasynth.cli import main
from terrasynth.generate.api import load_pipeline
from terrasynth.generate.pix2pix_generator import Pix2PixGenerator
from terrasynth.generate.provenance import read_provenance
from terrasynth.models.pix2pix import load_pix2pix
from terrasynth.train.pix2pix import train_pix2pix


@pytest.fixture(scope="module")
def pix2pix_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pix2pix")
    config = tiny_pix2pix_train_config(make_paired_tiles(tmp / "pairs", n=4, size=32), tmp / "run")
    return train_pix2pix(config, progress=False)


def test_generate_cli_draws_seeded_images_from_a_layout_with_provenance(pix2pix_dir, tmp_path, capsys):
    mask = write_mask_png(tmp_path / "layout.png", random_mask(np.random.default_rng(1), 32))
    common = ["generate", "--model", str(pix2pix_dir), "--layout", str(mask), "--n", "2", "--seed", "7", "-q"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    first, second = sorted((tmp_path / "a").glob("layout-00*.png"))
    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in (first, second)]
    assert pixels[0].shape == (32, 32, 3)
    assert not np.array_equal(pixels[0], pixels[1])  # dropout noise differs per seed
    again = np.asarray(Image.open(tmp_path / "b" / first.name).convert("RGB"))
    assert np.array_equal(pixels[0], again)  # and the seed reproduces it
    record = read_provenance(first)
    assert record.synthetic and record.model == str(pix2pix_dir) and record.seed == 7 and record.layout_sha256


def test_without_a_layout_exits_2_naming_the_need(pix2pix_dir, tmp_path, capsys):
    code = main(["generate", "--model", str(pix2pix_dir), "--prompt", "forest", "--out", str(tmp_path / "o"), "-q"])
    assert code == 2 and "layout" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_deterministic_mode_is_the_realism_baseline(pix2pix_dir):
    pipeline, model_id, sha = load_pipeline(pix2pix_dir)
    assert isinstance(pipeline, Pix2PixGenerator) and model_id == str(pix2pix_dir) and len(sha) == 64
    layout = torch.from_numpy(random_mask(np.random.default_rng(2), 32)).long()
    deterministic = Pix2PixGenerator.from_pretrained(pix2pix_dir, stochastic=False)
    images = deterministic("", layout=layout, num_images=2, seed=0).images
    baseline = load_pix2pix(pix2pix_dir).generate(layout)
    assert torch.equal(images[0], images[1]) and torch.allclose(images[0], baseline)
