"""Helpers for the tests/test_rtvp_*.py files (a module, not a test file)."""

from __future__ import annotations

import torch


def unit_text(k: int, dim: int = 384, seed: int = 0) -> torch.Tensor:
    """`k` seeded random text embeddings of unit length, standing in for the sentence encoder's."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=-1)
