"""Each loss term is finite and sends gradient to the parts it trains, and only those."""

from __future__ import annotations

import pytest
import torch

from rtvp_support import unit_text

from engines.rtvp import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread

TARGETS = [{"boxes": torch.tensor([[20.0, 30.0, 60.0, 52.0], [100.0, 8.0, 104.0, 12.0]]), "labels": torch.tensor([0, 2])},
           {"boxes": torch.tensor([[64.0, 64.0, 96.0, 120.0]]), "labels": torch.tensor([1])}]


def grads(model, names):
    return {n: any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr_path(model, n).parameters())
            for n in names}


def getattr_path(obj, dotted):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


PARTS = ["expert", "sam", "adapter.sampler", "adapter.decoders", "prompt.scorers", "prompt.fusion",
         "aux", "neck", "head"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model(scale="tiny", imgsz=128)
    for conv in model.prompt.fusion:  # past step 0: the zero-initialised fusion passes gradient on
        torch.nn.init.normal_(conv.weight, std=0.05)
    text = unit_text(3, 384)
    return model, text


def term_grads(model, text, term, frozen_sam=False):
    model.zero_grad(set_to_none=True)
    if frozen_sam:
        model.freeze_sam()
    model.train()
    torch.manual_seed(1)
    out = model(torch.rand(2, 3, 128, 128), text)
    _, terms = model.loss(out, TARGETS)
    # Recompute the one term through the loss function with the others weighted to zero.
    weights = model.loss_fn.w
    saved = dict(vars(weights))
    for k in saved:
        setattr(weights, k, 1.0 if k == term else 0.0)
    try:
        total, single = model.loss(out, TARGETS)
    finally:
        for k, v in saved.items():
            setattr(weights, k, v)
    total.backward()
    return terms, single, grads(model, PARTS)


def test_all_terms_reported_and_finite(setup):
    model, text = setup
    model.train()
    total, terms = model.loss(model(torch.rand(2, 3, 128, 128), text), TARGETS)
    assert set(terms) == {"box", "cls", "dfl", "rec", "aux", "total"}
    assert all(torch.isfinite(torch.tensor(v)) and v >= 0 for v in terms.values())
    assert torch.isfinite(total) and total > 0
    # An image batch with no defect at all still gives a finite loss (the defect-free share).
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    total, terms = model.loss(model(torch.rand(2, 3, 128, 128), text), empty)
    assert torch.isfinite(total) and terms["box"] == 0 and terms["cls"] > 0


@pytest.mark.parametrize("term,trains,untouched", [
    ("box", {"expert", "neck", "head", "prompt.fusion", "adapter.decoders", "sam"}, {"aux"}),
    ("cls", {"expert", "neck", "head", "prompt.fusion", "sam"}, {"aux"}),
    ("dfl", {"expert", "neck", "head"}, {"aux"}),
    # Stop-gradient on the expert: reconstruction trains only the SAM side.
    ("rec", {"sam", "adapter.sampler", "adapter.decoders"},
     {"expert", "neck", "head", "aux", "prompt.scorers", "prompt.fusion"}),
    # The score-weighted aux CIoU trains the aux head and, through M, the scorer.
    ("aux", {"aux", "prompt.scorers", "adapter.decoders"}, {"expert", "neck", "head", "prompt.fusion"}),
])
def test_term_gradients(setup, term, trains, untouched):
    model, text = setup
    terms, single, got = term_grads(model, text, term)
    assert single[term] > 0 and torch.isfinite(torch.tensor(single[term]))
    assert {p for p in trains if not got[p]} == set(), f"{term} does not reach {trains}"
    assert {p for p in untouched if got[p]} == set(), f"{term} leaks into {untouched}"


def test_frozen_sam_gets_no_gradient_and_stays_in_eval():
    torch.manual_seed(0)
    model = build_model(scale="tiny", imgsz=128)
    text = unit_text(3, 384)
    for term in ("box", "rec", "aux"):
        _, _, got = term_grads(model, text, term, frozen_sam=True)
        assert not got["sam"]
        assert all(p.grad is None for p in model.sam.parameters())
        assert not model.sam.training and model.adapter.training
