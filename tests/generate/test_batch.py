"""Whole-set generation: files per layout / per class, cached, with provenance."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.fake_models import FakeTextEncoder, save_tiny_model
from tests.fakes import make_paired_tiles

from terrasynth.data.images import read_image
from terrasynth.data.paired_tiles import PairedTiles
from terrasynth.data.scene_folder import SceneFolder
from terrasynth.errors import InputError
from terrasynth.generate.batch import generate_for_layouts, generate_for_scene_classes
from terrasynth.generate.pipeline import LayoutToImagePipeline
from terrasynth.generate.provenance import read_provenance
from terrasynth.generate.sampling import Sampling


def _bundle(tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    return LayoutToImagePipeline.from_pretrained(folder), str(folder), "sha"


def test_one_file_per_layout_named_by_id_and_cached(tmp_path):
    pipeline, model_id, sha = _bundle(tmp_path)
    pipeline._text_encoder = FakeTextEncoder()
    root = make_paired_tiles(tmp_path / "pairs", n=3, size=32)
    data = PairedTiles(root, "all")
    written = generate_for_layouts((pipeline, model_id, sha), data, tmp_path / "out", Sampling(steps=2), progress=False)
    assert [p.name for p in written] == [f"{i}-000.png" for i in data.ids]
    record = read_provenance(written[0])
    assert record.synthetic and record.prompt == data[0]["caption"] and record.layout_sha256
    before = [p.stat().st_mtime_ns for p in written]
    again = generate_for_layouts((pipeline, model_id, sha), data, tmp_path / "out", Sampling(steps=2), progress=False)
    assert [p.stat().st_mtime_ns for p in again] == before


def test_scene_classes_make_a_scene_folder(tmp_path):
    pipeline, model_id, sha = _bundle(tmp_path)
    pipeline._text_encoder = FakeTextEncoder()
    out = generate_for_scene_classes(
        (pipeline, model_id, sha),
        ["forest", "river_lake"],
        tmp_path / "scenes",
        3,
        Sampling(steps=2),
        size=32,
        batch_size=2,
        progress=False,
    )
    data = SceneFolder(out, "all")
    assert data.classes == ["forest", "river_lake"] and len(data) == 6
    assert "forest" in read_provenance(out / "forest" / "forest-002.png").prompt


def test_guidance_interval_reaches_the_sampler_and_the_provenance(tmp_path):
    pipeline, model_id, sha = _bundle(tmp_path)
    pipeline._text_encoder = FakeTextEncoder()
    data = PairedTiles(make_paired_tiles(tmp_path / "pairs", n=1, size=32), "all")
    plain = generate_for_layouts((pipeline, model_id, sha), data, tmp_path / "plain", Sampling(steps=2), progress=False)
    interval = generate_for_layouts(
        (pipeline, model_id, sha),
        data,
        tmp_path / "interval",
        Sampling(steps=2, guidance_interval=(0.5, 1)),
        progress=False,
    )
    assert "guidance_interval" not in read_provenance(plain[0]).extra
    assert read_provenance(interval[0]).extra["guidance_interval"] == [0.5, 1.0]
    assert not torch.equal(read_image(plain[0]), read_image(interval[0]))


def test_guidance_rescale_reaches_the_sampler_and_the_provenance(tmp_path):
    pipeline, model_id, sha = _bundle(tmp_path)
    pipeline._text_encoder = FakeTextEncoder()
    data = PairedTiles(make_paired_tiles(tmp_path / "pairs", n=1, size=32), "all")
    sampling = Sampling(steps=2, guidance_scale=5.0)
    plain = generate_for_layouts((pipeline, model_id, sha), data, tmp_path / "plain", sampling, progress=False)
    rescaled = generate_for_layouts(
        (pipeline, model_id, sha),
        data,
        tmp_path / "rescaled",
        dataclasses.replace(sampling, guidance_rescale=0.7),
        progress=False,
    )
    assert "guidance_rescale" not in read_provenance(plain[0]).extra
    assert read_provenance(rescaled[0]).extra["guidance_rescale"] == 0.7
    assert not torch.equal(read_image(plain[0]), read_image(rescaled[0]))


def test_a_signer_signs_every_file_of_a_set(tmp_path):
    pytest.importorskip("c2pa")
    from tests.generate.test_content_credentials import make_chain

    from terrasynth.generate.content_credentials import SignerConfig, read_credentials

    pipeline, model_id, sha = _bundle(tmp_path)
    pipeline._text_encoder = FakeTextEncoder()
    signer = SignerConfig(*make_chain(tmp_path / "c2pa"))
    data = PairedTiles(make_paired_tiles(tmp_path / "pairs", n=2, size=32), "all")
    bundle = (pipeline, model_id, sha)
    written = generate_for_layouts(bundle, data, tmp_path / "out", Sampling(steps=2), progress=False, signer=signer)
    scenes = generate_for_scene_classes(
        bundle, ["forest"], tmp_path / "scenes", 2, Sampling(steps=2), size=32, progress=False, signer=signer
    )
    for path in written + sorted((scenes / "forest").glob("*.png")):
        credentials = read_credentials(path)
        assert credentials["signature_valid"] and credentials["content_intact"], path
        assert credentials["record"] == read_provenance(path).to_dict()
    # A bad key fails before any sampling: no file is written.
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(InputError, match="bad.pem"):
        generate_for_layouts(
            bundle,
            data,
            tmp_path / "bad",
            Sampling(steps=2),
            progress=False,
            signer=SignerConfig(signer.cert_chain_path, tmp_path / "bad.pem"),
        )
    assert not (tmp_path / "bad").exists()
