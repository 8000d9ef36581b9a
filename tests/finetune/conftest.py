"""Fine-tuning tests: one torch thread (tiny models), no hub traffic, and one tiny Stable Diffusion per module."""

import pytest
import torch
from tests.fake_sd import save_tiny_sd
from tests.fakes import make_paired_tiles


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch, tmp_path):
    """The hub is unreachable and its cache empty, whatever machine runs the tests."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A tiny Stable Diffusion folder (32-px images, 16×16 latents)."""
    return save_tiny_sd(tmp_path_factory.mktemp("sd") / "base")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """6 paired 32×32 tiles with the LandCover.ai classes."""
    return make_paired_tiles(tmp_path_factory.mktemp("data") / "pairs", n=6, size=32)
