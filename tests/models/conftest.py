"""Model tests run single-threaded: their inputs are tiny, and on a shared 2-core machine two OpenMP
threads competing with other processes made a ResNet-18 step ~50x slower than one thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
