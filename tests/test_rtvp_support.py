"""Shared by the tests/test_rtvp_*.py files (holds no tests itself).

One intra-op thread: on this shared 2-core machine, two OpenMP threads wait for each
other at every op while other processes hold the cores, and a tiny training step went
from 0.3 s to 19 s.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def unit_text(k: int, dim: int = 384, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=-1)
