"""Export a model package's deploy graph to ONNX, with a vocabulary baked in as constants.

The graph is what TensorRT 10 and ONNX Runtime both run: opset 17, a static
S x S input and a fixed class count K, only the batch dimension dynamic, and none of
the ops whose output shape depends on the data (NonZero, ScatterND, ...). A new
vocabulary only needs new text embeddings (`engines.rtvp.text.TextEncoder`) and a
re-export, seconds, no training. The vocabulary, model version and input size are
recorded in the file's metadata; runtimes refuse a file built for another vocabulary.
Every exported file gets its sha256 beside it (`<file>.sha256`): metadata can be copied
onto an edited graph, the digest cannot, so a cached graph that differs is exported again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EngineError
from engines.package import ModelPackage, record_digest
from storage.files import atomic_write

log = logging.getLogger(__name__)

OPSET = 17
INPUT, OUTPUTS = "images", ("boxes", "scores")
# Ops TensorRT cannot run, or runs only with data-dependent output shapes (docs/rtvp-spec.md section 4).
FORBIDDEN_OPS = {"NonZero", "ScatterND", "ScatterElements", "Scatter", "Einsum", "Unique",
                 "NonMaxSuppression", "Compress", "Loop", "If", "Scan", "GridSample"}
# Inputs that set an output's shape: they must not depend on the pixel values.
SHAPE_INPUTS = {"Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
                "Range": (0, 1, 2), "Slice": (1, 2, 3, 4), "TopK": (1,), "Resize": (1, 2, 3),
                "Upsample": (1,), "Pad": (1,), "OneHot": (1,), "Squeeze": (1,), "Unsqueeze": (1,)}


def build_detector(arch: dict[str, Any]):
    """The RTVP network a package's manifest describes (untrained until weights load)."""
    from engines.rtvp import RTVPConfig, build_model

    return build_model(RTVPConfig.from_dict(arch))


def load_model(package: ModelPackage):
    """The package's RTVP model with its weights, in eval mode."""
    try:
        model = build_detector(package.arch)
    except (TypeError, ValueError, KeyError) as exc:
        raise EngineError(f"{package.path}: manifest 'arch' does not describe an RTVP model ({exc})") from None
    try:
        model.load_state_dict(package.state_dict())
    except RuntimeError as exc:
        raise EngineError(f"{package.path}: weights do not fit the manifest's arch ({exc})") from None
    return model.eval()


def vocabulary_embeddings(package: ModelPackage,
                          vocabulary: Sequence[str] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(K, D) text embeddings for `vocabulary`: the package's rows, new words encoded."""
    vocabulary = tuple(vocabulary) if vocabulary else package.vocabulary
    if not vocabulary or len(set(vocabulary)) != len(vocabulary) or not all(w.strip() for w in vocabulary):
        raise EngineError(f"vocabulary {list(vocabulary)}: needs distinct, non-empty class names")
    known = dict(zip(package.vocabulary, package.embeddings()))
    new = [word for word in vocabulary if word not in known]
    if new:
        log.info("encoding %d new class name(s): %s", len(new), ", ".join(new))
        known.update(zip(new, _text_encoder(package).encode(new)))
    embeddings = np.stack([np.asarray(known[word], np.float32) for word in vocabulary])
    dim = package.arch.get("text_dim")
    if dim is not None and embeddings.shape[1] != dim:
        raise EngineError(f"{package.path}: text embeddings have {embeddings.shape[1]} dims, the model "
                          f"expects {dim} (text.npy from another text encoder?)")
    return vocabulary, embeddings


def _text_encoder(package: ModelPackage):
    """The encoder the package was trained with: manifest 'text_encoder', else by text_dim."""
    from engines.rtvp.text import TextEncoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    info = package.manifest.get("text_encoder")
    if isinstance(info, dict):
        return TextEncoder(kind=info.get("kind", "minilm"), checkpoint=info.get("checkpoint"))
    if isinstance(info, str):
        return TextEncoder(kind=info)
    return TextEncoder(kind="clip" if package.arch.get("text_dim") == 512 else "minilm")


def vocabulary_hash(vocabulary: Sequence[str], embeddings: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(list(vocabulary)).encode())
    digest.update(np.ascontiguousarray(embeddings, np.float32).tobytes())
    return digest.hexdigest()[:12]


def export_onnx(package: ModelPackage, out: Path, *, vocabulary: Sequence[str] | None = None,
                imgsz: int | None = None, batch: int | None = None, opset: int = OPSET) -> Path:
    """Write the deploy graph to `out` (atomically). batch=None: dynamic batch dimension."""
    import onnx
    import torch

    imgsz = imgsz or int(package.arch.get("imgsz", 640))
    if imgsz % 32:
        raise EngineError(f"imgsz {imgsz} is not a multiple of 32")
    if batch is not None and batch < 1:
        raise EngineError(f"batch {batch}: must be at least 1 (or dynamic)")
    if opset < OPSET:
        raise EngineError(f"opset {opset}: 17 or newer is needed (native LayerNormalization)")
    started = time.monotonic()
    log.info("exporting %s to ONNX (%dx%d) ...", package.version, imgsz, imgsz)
    vocabulary, embeddings = vocabulary_embeddings(package, vocabulary)
    deploy = load_model(package).deploy(torch.from_numpy(embeddings)).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    graph = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in (INPUT, *OUTPUTS)} if batch is None else None
    dummy = torch.zeros(batch or 1, 3, imgsz, imgsz)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            probe = [tuple(t.shape) for t in deploy(dummy)]
            torch.onnx.export(deploy, (dummy,), graph,
                              dynamo=False, opset_version=opset, input_names=[INPUT],
                              output_names=list(OUTPUTS), dynamic_axes=dynamic, do_constant_folding=True)
        proto = onnx.load_model_from_string(graph.getvalue())
        _declare_output_shapes(proto, probe)
        onnx.checker.check_model(proto, full_check=True)
        check_deployable(proto, len(vocabulary), imgsz)
        meta = {"vocabulary": json.dumps(list(vocabulary)), "vocabulary_hash": vocabulary_hash(vocabulary, embeddings),
                "version": package.version, "imgsz": str(imgsz), "batch": str(batch or "dynamic"),
                "producer": "glass-edge engines.export"}
        del proto.metadata_props[:]
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        with atomic_write(out, "wb", fsync=False) as fh:
            fh.write(proto.SerializeToString())
        record_digest(out)
    except EngineError:
        raise
    except Exception as exc:  # exporter and checker raise many types; name the model and cause
        raise EngineError(f"{package.path}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
    log.info("exported %s (%d classes, %dx%d, batch %s) to %s in %.1f s", package.version,
             len(vocabulary), imgsz, imgsz, batch or "dynamic", out, time.monotonic() - started)
    return out


def _declare_output_shapes(proto, probe: list[tuple[int, ...]]) -> None:
    """Write the anchor and class counts the probe run gave into the graph's outputs.

    The TorchScript exporter leaves them symbolic when its shape inference loses track
    (e.g. anchors built from a feature map's shape); they are static all the same, as
    check_deployable verifies by tracing which shapes could depend on the pixels.
    """
    for output, shape in zip(proto.graph.output, probe):
        for dim, size in zip(list(output.type.tensor_type.shape.dim)[1:], shape[1:]):
            dim.Clear()
            dim.dim_value = size


def check_deployable(proto, num_classes: int, imgsz: int) -> None:
    """Refuse a graph TensorRT 10 could not build with static shapes (docs/rtvp-spec.md section 4)."""
    graph = proto.graph
    ops = {node.op_type for node in graph.node}
    if ops & FORBIDDEN_OPS:
        raise EngineError(f"exported graph uses {', '.join(sorted(ops & FORBIDDEN_OPS))}: not deployable "
                          "to TensorRT with static shapes; fix the deploy module")
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param
                       for d in v.type.tensor_type.shape.dim] for v in (*graph.input, *graph.output)}
    expected = {INPUT: [3, imgsz, imgsz], OUTPUTS[0]: [None, 4], OUTPUTS[1]: [None, num_classes]}
    for name, tail in expected.items():
        shape = shapes.get(name)
        if shape is None or len(shape) != len(tail) + 1 or any(
                want is not None and got != want for got, want in zip(shape[1:], tail)):
            raise EngineError(f"exported graph: {name} has shape {shape}, expected (batch, "
                              f"{', '.join('A' if t is None else str(t) for t in tail)})")
    if not isinstance(shapes[OUTPUTS[0]][1], int) or shapes[OUTPUTS[0]][1] != shapes[OUTPUTS[1]][1]:
        raise EngineError(f"exported graph: anchor count must be static and equal in boxes and scores, "
                          f"got {shapes[OUTPUTS[0]]} and {shapes[OUTPUTS[1]]}")
    data = {INPUT}  # tensors whose values depend on the pixels (not only on their shape)
    for node in graph.node:
        for index in SHAPE_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] in data:
                raise EngineError(f"exported graph: {node.op_type} node {node.name!r} takes its shape from "
                                  "the image data (a data-dependent shape); TensorRT needs static shapes")
        if node.op_type not in ("Shape", "Size") and any(name in data for name in node.input):
            data.update(node.output)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata an exported file records (vocabulary, version, imgsz, batch)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise EngineError(f"{path}: no such ONNX file") from None
    except Exception as exc:  # protobuf DecodeError and friends: a damaged file
        raise EngineError(f"{path}: not a readable ONNX model ({type(exc).__name__}); re-export it") from None
    return {prop.key: prop.value for prop in proto.metadata_props}


def check_vocabulary(path: Path, metadata: dict[str, str], vocabulary: Sequence[str]) -> None:
    """Refuse a graph exported for other class names: its score columns mean other things."""
    if "vocabulary" not in metadata:
        raise EngineError(f"{path}: records no vocabulary; export it with `edge export`")
    recorded = json.loads(metadata["vocabulary"])
    if list(recorded) != list(vocabulary):
        raise EngineError(f"{path}: exported for vocabulary {recorded}, asked for {list(vocabulary)}; "
                          "re-export with `edge export --vocab`")
