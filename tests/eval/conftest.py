"""One torch thread for the evaluation tests: on a shared 2-core machine, 2 threads per process
contend with other jobs and run many times slower than 1."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
