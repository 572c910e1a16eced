"""The deploy graph equals the eval model and exports to ONNX opset 17 without ops that
TensorRT or a static-shape runtime cannot take (ScatterND, NonZero, Einsum)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rtvp_support import unit_text

from engines.rtvp import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread

FORBIDDEN = {"ScatterND", "ScatterElements", "Scatter", "NonZero", "Einsum", "GridSample"}


def trained_like(model):
    """Weights away from their initial values (zero fusion, unit BN) so that every path counts."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for conv in model.prompt.fusion:
            conv.weight.normal_(0, 0.05, generator=g)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model


def op_types(graph) -> set[str]:
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops |= op_types(attr.g)
    return ops


def export(deployed, path, hw):
    torch.onnx.export(deployed, (torch.rand(1, 3, *hw),), str(path), opset_version=17, dynamo=False,
                      input_names=["images"], output_names=["boxes", "scores"],
                      dynamic_axes={"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}})
    return onnx.load(str(path))


@pytest.mark.parametrize("overrides", [
    {},
    {"expert_adapter": False, "patch_size": 64},
    {"sparse_select": False, "text_attn": False},
    {"patch_size": 128},
    {"p2": True},
])
def test_deploy_equals_eval_and_exports(tmp_path, overrides):
    torch.manual_seed(0)
    hw = (160, 224)  # not a multiple of the 64/128-px patches: padding in the selection is exercised
    model = trained_like(build_model(scale="tiny", imgsz=hw[0], **overrides)).eval()
    text = unit_text(4, 384)
    images = torch.rand(2, 3, *hw)
    with torch.no_grad():
        boxes, scores = model(images, text)
        deployed = model.deploy(text)
        d_boxes, d_scores = deployed(images)
    anchors = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32, 4)[:4 if model.config.p2 else 3])
    assert boxes.shape == (2, anchors, 4) and scores.shape[-1] == 4
    assert (d_scores - scores).abs().max() < 1e-4
    assert (d_boxes - boxes).abs().max() < 1e-4
    assert not hasattr(deployed, "aux") and not hasattr(deployed, "loss_fn")
    assert not any(p.requires_grad for p in deployed.parameters())
    deployed.train()  # a deploy graph never masks or updates BN statistics
    assert not deployed.training

    graph = export(deployed, tmp_path / "model.onnx", hw)
    ops = op_types(graph.graph)
    assert not ops & FORBIDDEN, ops & FORBIDDEN
    assert "TopK" in ops if model.config.sparse_select else "TopK" not in ops
    onnx.checker.check_model(graph)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    o_boxes, o_scores = session.run(None, {"images": images.numpy()})  # batch 2 on a batch-1 export
    assert np.abs(o_scores - scores.numpy()).max() < 1e-4
    assert np.abs(o_boxes - boxes.numpy()).max() < 1e-2  # pixels; fp32 sums in another order


def test_deploy_does_not_touch_the_training_model():
    model = build_model(scale="tiny", imgsz=128).train()
    text = unit_text(2, 384)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = model.deploy(text)
    deployed(torch.rand(1, 3, 128, 128))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
