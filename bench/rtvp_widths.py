"""How narrow must RTVP be to run as fast as YOLOv8n on a CPU? Untrained graphs, timed.

    python -m bench.rtvp_widths --reference yolov8n.onnx [--runs 8] [--threads N]

Builds the deploy graph of the shipped scales (tiny, n) and of in-between widths that
exist only here (random weights: latency does not depend on them), exports each as `edge`
does (engines/export.py, 640 px, dynamic batch), and times them against a YOLOv8n ONNX file in one ONNX
Runtime with the engine's session options, calls interleaved round-robin, batch 1 and 6,
ms/view of the graph alone. It answers which parts must shrink before training anything:
a width that is not fast enough untrained will not be fast trained.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.engines import hardware, interleaved_ms_per_view, percentile, untrained_package
from engines.export import export_onnx
from engines.rtvp import RTVPConfig, build_model, expert, model, sam_encoder
from engines.rtvp.sam_encoder import TinyViTSpec
from engines.runtimes.onnxruntime import session_options

SMALL_VIT = TinyViTSpec((16, 32, 48, 96), (1, 1, 1, 1), (1, 1, 2, 3), out_chans=64, mbconv_expand_ratio=2)
# name: (expert/neck/head (depth, width, max channels), SAM encoder, reconstruction decoder width).
# The in-between scales are registered in the model's scale tables for this process only.
WIDTHS = {
    "n-smallvit": (expert.SCALES["n"], SMALL_VIT, 16),
    "w0.1875": ((0.33, 0.1875, 1024), TinyViTSpec((24, 48, 64, 128), (1, 1, 1, 1), (1, 2, 2, 4), out_chans=96,
                                                   mbconv_expand_ratio=2), 32),
    "w0.1875-smallvit": ((0.33, 0.1875, 1024), SMALL_VIT, 16),
    "w0.125-d0.33-smallvit": ((0.33, 0.125, 1024), SMALL_VIT, 16),
}


def deploy_graph(scale: str, folder: Path) -> tuple[Path, float]:
    """An untrained RTVP of `scale` exported as `edge` exports it (640 px, dynamic batch):
    the ONNX file and the parameters in millions."""
    package = untrained_package(folder, scale, 640)
    onnx = export_onnx(package, folder / f"{scale}.onnx", imgsz=640)
    return onnx, sum(p.numel() for p in build_model(RTVPConfig(scale=scale)).parameters()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a YOLOv8n ONNX file (dynamic batch)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    import onnxruntime as ort

    for name, (widths, vit, decoder) in WIDTHS.items():
        expert.SCALES[name], sam_encoder.REDUCED[name], model.DECODER_WIDTH[name] = widths, vit, decoder
    sessions = {"yolov8n": ort.InferenceSession(str(args.reference), session_options(ort, args.threads),
                                                providers=["CPUExecutionProvider"])}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in ("n", *WIDTHS, "tiny"):
            path, millions = deploy_graph(scale, Path(tmp))
            sessions[f"rtvp-{scale} ({millions:.2f} M)"] = ort.InferenceSession(
                str(path), session_options(ort, args.threads), providers=["CPUExecutionProvider"])
    print(f"machine: {hardware()}; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"onnxruntime {ort.__version__} CPU, {args.threads} threads, 640 px, {args.runs} interleaved runs "
          "after 1 warm-up call, ms/view p50")
    for batch in (1, 6):
        images = np.random.default_rng(0).random((batch, 3, 640, 640), dtype=np.float32)
        feeds = {name: {session.get_inputs()[0].name: images} for name, session in sessions.items()}
        times = interleaved_ms_per_view(sessions, feeds, batch, args.runs, warmup=1)
        for name, values in times.items():
            print(f"batch {batch}  {name:<36} {percentile(values, 50):7.1f}")
    print(f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
