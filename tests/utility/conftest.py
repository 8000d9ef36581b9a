"""Tiny models run faster on one thread: on a busy CPU, OpenMP threads of small ops wait on each other."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
