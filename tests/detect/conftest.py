"""One torch thread (the tests share a busy CPU) and fake tile sets."""

import pytest
import torch
from tests.detect.fake_tiles import make_sets


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_sets():
    return make_sets(24)
