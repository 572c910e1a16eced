"""Any vocabulary is valid: unseen defect words get scores, nothing in the weights depends on K,
and embeddings are cached per vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.errors import EngineError
from rtvp_support import unit_text

from engines.rtvp import RTVPConfig, build_model
from engines.rtvp.text import TextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return TextEncoder("minilm", cache_dir=tmp_path_factory.mktemp("text-cache"))


def test_unseen_word_runs_and_gets_scores(encoder):
    vocabulary = ["oil", "black spot", "bubble", "crizzled rim"]  # the last was never trained on
    text = encoder.encode(vocabulary)
    assert text.shape == (4, 384) and text.dtype == np.float32
    assert np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    torch.manual_seed(0)
    model = build_model(scale="tiny", imgsz=128).eval()
    with torch.no_grad():
        boxes, scores = model(torch.rand(1, 3, 128, 160), text)
        _, scores3 = model(torch.rand(1, 3, 128, 160), text[:3])
    assert scores.shape == (1, boxes.shape[1], 4)
    assert torch.isfinite(scores[..., 3]).all() and ((scores >= 0) & (scores <= 1)).all()
    assert not torch.allclose(scores[..., 3], scores[..., 0])  # its own score, not a copy
    assert scores3.shape[-1] == 3


def test_weights_do_not_depend_on_the_vocabulary_size():
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    a, b = build_model(scale="tiny"), build_model(scale="tiny")
    assert shapes(a) == shapes(b)
    b.load_state_dict(a.state_dict(), strict=True)
    b.eval()
    for k in (1, 9, 120):
        text = unit_text(k, 384)
        with torch.no_grad():
            assert b(torch.rand(1, 3, 96, 96), text)[1].shape[-1] == k


def test_cache_per_vocabulary(encoder, monkeypatch):
    names = ["oil", "quenched grain"]
    first = encoder.encode(names)
    cached = encoder.cache_file(names)
    assert cached.is_file() and np.array_equal(np.load(cached), first)
    assert encoder.cache_file(["oil"]) != cached
    fresh = TextEncoder("minilm", cache_dir=encoder.cache_dir)
    monkeypatch.setattr(fresh, "_encode", lambda _: pytest.fail("re-encoded a cached vocabulary"))
    assert np.array_equal(fresh.encode(names), first)


def test_bad_text_inputs_raise_engine_errors(tmp_path):
    with pytest.raises(EngineError, match="checkpoint"):
        TextEncoder("clip")
    with pytest.raises(EngineError, match="not a CLIP checkpoint"):
        TextEncoder("clip", checkpoint=tmp_path).encode(["oil"])
    with pytest.raises(EngineError, match="non-empty"):
        TextEncoder("minilm").encode(["oil", " "])
    model = build_model(scale="tiny")
    with pytest.raises(EngineError, match="expected"):
        model(torch.rand(1, 3, 64, 64), torch.rand(3, 512))


def test_config_round_trip():
    cfg = RTVPConfig(scale="s", sam="tinyvit5m", patch_size=64, text_attn=False, text_dim=512)
    assert RTVPConfig.from_dict(cfg.to_dict()) == cfg
    assert build_model(cfg.to_dict()).config == cfg
    with pytest.raises(EngineError, match="unknown fields"):
        RTVPConfig.from_dict({**cfg.to_dict(), "nope": 1})
    with pytest.raises(EngineError, match="patch_size"):
        RTVPConfig(patch_size=48)
