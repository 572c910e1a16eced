"""Shapes at every stage for the n and s scales, at 640 and at a non-square size."""

from __future__ import annotations

import pytest
import torch

from rtvp_support import unit_text

from engines.rtvp import build_model
from engines.rtvp.info import summarize

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread

CHANNELS = {"n": (64, 128, 256), "s": (128, 256, 512)}


@pytest.mark.parametrize("scale,sam", [("n", "reduced"), ("s", "tinyvit5m")])
@pytest.mark.parametrize("hw", [(640, 640), (384, 512)])
def test_stage_shapes(scale, sam, hw, capsys):
    torch.manual_seed(0)
    model = build_model(scale=scale, sam=sam).eval()
    summary = summarize(model, flops=False)
    with capsys.disabled():
        print(f"\nRTVP-{scale} (SAM {sam}) parameters: "
              + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in summary["params"].items())
              + f"; total {summary['params_total'] / 1e6:.3f} M")
    k = 7
    text = unit_text(k, 384)
    images = torch.rand(1, 3, *hw)
    h, w = hw
    levels = [(h // s, w // s) for s in (8, 16, 32)]
    c_sam = 256 if sam == "tinyvit5m" else 128
    with torch.no_grad():
        assert model.sam(images).shape == (1, c_sam, h // 16, w // 16)
        out = model._run(images, model.neck.guides(text), model.head.class_weights(text))
        aux = model.aux(out["refined"])
        boxes, scores = model.head.decode(out)
    for i, (c, (lh, lw)) in enumerate(zip(CHANNELS[scale], levels)):
        for name in ("expert", "recon", "refined", "fused"):
            assert out[name][i].shape == (1, c, lh, lw), (name, i)
        assert out["scores"][i].shape == (1, 1, lh, lw)
        assert out["selected"][i].shape == (1, 1, lh, lw)
        assert aux[i].shape == (1, 64, lh, lw)
    # At most k=4 points per 32-px patch (4x4 cells at stride 8): density <= 25 %.
    sel = out["selected"][0]
    assert 0 < sel.sum() <= 4 * (h // 32) * (w // 32)
    assert set(sel.unique().tolist()) <= {0.0, 1.0}
    anchors = sum(lh * lw for lh, lw in levels)
    assert out["dist"].shape == (1, anchors, 64) and out["logits"].shape == (1, anchors, k)
    assert boxes.shape == (1, anchors, 4) and scores.shape == (1, anchors, k)
    assert ((scores >= 0) & (scores <= 1)).all()
    if hw == (640, 640):
        assert anchors == 8400


def test_p2_adds_a_stride4_level_and_leaves_the_others_alone():
    """arch p2: N2 at stride 4 after N3-N5; a three-level model's weights load into it unchanged."""
    torch.manual_seed(0)
    base = build_model(scale="n").eval()
    fine = build_model(scale="n", p2=True).eval()
    new, unexpected = fine.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in new} == {"neck.top_down2", "head.box", "head.embed",
                                                                     "head.contrast"}
    assert all(".3." in k for k in new if k.startswith("head."))  # only the fourth level of the head
    text = unit_text(3, 384)
    images = torch.rand(1, 3, 256, 320)
    with torch.no_grad():
        out = fine._run(images, fine.neck.guides(text), fine.head.class_weights(text))
        ref = base._run(images, base.neck.guides(text), base.head.class_weights(text))
    assert out["shapes"] == ref["shapes"] + [(64, 80)] and out["strides"] == [8, 16, 32, 4]
    three = ref["logits"].shape[1]
    assert out["logits"].shape == (1, three + 64 * 80, 3)
    assert torch.allclose(out["logits"][:, :three], ref["logits"], atol=1e-5)
    # At initialisation the logits hardly depend on the features, so compare N3-N5 themselves.
    feats = [torch.randn(1, c, 256 // s, 320 // s) for c, s in zip((64, 128, 256, 32), (8, 16, 32, 4))]
    with torch.no_grad():
        n_fine = fine.neck(feats, fine.neck.guides(text))
        n_base = base.neck(feats[:3], base.neck.guides(text))
    assert len(n_fine) == 4 and n_fine[3].shape == (1, 32, 64, 80)
    assert all(torch.equal(a, b) for a, b in zip(n_fine[:3], n_base))  # the old levels unchanged
