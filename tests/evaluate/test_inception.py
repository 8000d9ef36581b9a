import argparse

import pytest
import torch
from safetensors.torch import save_file

from terrasynth.errors import InputError
from terrasynth.evaluate.features import InceptionExtractor, build_extractor
from terrasynth.evaluate.inception import FIDInceptionV3, load_fid_inception


@pytest.fixture(scope="module")
def random_inception():
    torch.manual_seed(0)
    return FIDInceptionV3()


def test_random_init_yields_2048_features(random_inception):
    out = random_inception(torch.rand(1, 3, 32, 32))  # resized to 299 inside, as pytorch-fid does
    assert out.shape == (1, 2048) and torch.isfinite(out).all()
    assert random_inception.fc.out_features == 1008


def test_loads_safetensors_and_plain_state_dict(tmp_path, random_inception):
    state = {k: v.contiguous() for k, v in random_inception.state_dict().items()}
    save_file(state, tmp_path / "inception.safetensors")
    loaded = load_fid_inception(tmp_path / "inception.safetensors")
    assert torch.equal(loaded.Mixed_7c.branch_pool.conv.weight, random_inception.Mixed_7c.branch_pool.conv.weight)
    small = {k: v for k, v in state.items() if k.startswith("fc.")}  # the .pth path, on a small file
    torch.save(small, tmp_path / "pt_inception.pth")
    with pytest.raises(InputError, match="missing"):  # a plain state dict is read, then checked for completeness
        load_fid_inception(tmp_path / "pt_inception.pth")


def test_refuses_pickles_that_are_not_weights(tmp_path):
    torch.save(argparse.Namespace(payload="not weights"), tmp_path / "evil.pth")
    with pytest.raises(InputError, match="not a plain PyTorch state dict"):
        load_fid_inception(tmp_path / "evil.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not FID Inception-v3 weights"):
        load_fid_inception(tmp_path / "other.pth")
    with pytest.raises(InputError, match="not found"):
        load_fid_inception(tmp_path / "missing.pth")


def test_extractor_descriptor_and_registry():
    extractor = InceptionExtractor(None)
    assert extractor.descriptor["dim"] == 2048 and "not FID" in extractor.descriptor["weights"]
    with pytest.raises(InputError, match="--inception-weights"):
        build_extractor("inception")
    with pytest.raises(InputError, match="unknown feature extractor"):
        build_extractor("clip")
    with pytest.raises(InputError, match="train-domain"):
        build_extractor("domain", domain_encoder="/nonexistent")
