"""RTVP-n fp32, RTVP-n INT8 and a YOLOv8n reference side by side on this CPU, in one process.

    python -m bench.cpu_speed [--model models/rtvp-n-synth] [--int8 PACKAGE|FILE.onnx | --no-int8]
                              [--reference yolov8n.onnx] [--imgsz 640] [--reference-imgsz 640]
                              [--threads N] [--runs 20]

Every graph runs in the same ONNX Runtime, with the same threads, on the same letterboxed
synthetic views (rtvp-n at --imgsz, YOLOv8n at --reference-imgsz: the issue compares
against YOLOv8n at 640 whatever size rtvp-n runs at), at batch 1 and 6; calls are
interleaved round-robin (one call of each graph per round), so that a shared machine's
load falls on every row alike. It prints ms/view p50 and p99 of the graph alone
(letterbox and NMS are extra for both detectors) in sessions the engine's own code makes
(engines/runtimes/onnxruntime.py session_options and cpu_session: ORT_ENABLE_ALL at load,
the optimized graph saved in a cache folder), and each graph's session start, the first
time and again from that saved graph (loaded with optimizations disabled, as a restarted
worker does); both include the engine's sha256 checks of the graphs.

--int8: an INT8 package made by `edge quantize` (its model.onnx) or an INT8 ONNX file;
without it the fp32 graph is quantized here on rendered views (speed does not depend on
the calibration); --no-int8 leaves that row out. --reference: a YOLOv8n ONNX file;
without it one is exported from Ultralytics' yolov8n.yaml (random weights: latency does
not depend on them) when the ultralytics package is installed, else that row is skipped
and said so. Ultralytics is a benchmark-only tool, never a runtime dependency.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.engines import hardware, interleaved_ms_per_view, percentile, synthetic_views
from engines.config import EngineConfig
from engines.package import ONNX, ModelPackage
from engines.preprocess import letterbox_into
from engines.registry import SHIPPED, DEFAULT_MODEL
from engines.runtimes.onnxruntime import cpu_session, session_options

BATCHES = (1, 6)


def int8_graph(arg: Path | None, fp32: Path, work: Path, imgsz: int) -> Path:
    """--int8 as a graph file: a package's model.onnx, a file, or quantized here."""
    if arg is not None:
        return arg / ONNX if arg.is_dir() else arg
    import cv2

    from engines.quantize import calibration_files, quantize_graph

    views = work / "calibration"
    views.mkdir()
    for i, image in enumerate(synthetic_views(24)):
        cv2.imwrite(str(views / f"{i:03d}.png"), image)
    print("no --int8: quantizing the fp32 graph here on 24 rendered views ...", flush=True)
    return quantize_graph(fp32, work / "int8.onnx", calibration_files(views, 24), imgsz, "bench-int8")


def reference_graph(arg: Path | None, work: Path, imgsz: int) -> Path | None:
    """--reference, else YOLOv8n exported from its yaml when ultralytics is installed, else None."""
    if arg is not None:
        return arg
    try:
        from ultralytics import YOLO
    except ImportError:
        print("yolov8n skipped: no --reference file and ultralytics is not installed "
              "(pip install ultralytics in a separate venv, or export yolov8n.onnx elsewhere)")
        return None
    cwd = os.getcwd()
    os.chdir(work)  # Ultralytics writes beside its model file
    try:
        return Path(YOLO("yolov8n.yaml").export(format="onnx", imgsz=imgsz, dynamic=True, opset=17,
                                                simplify=False)).resolve()
    finally:
        os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED / DEFAULT_MODEL, help="the fp32 RTVP package")
    parser.add_argument("--int8", type=Path, default=None, help="INT8 package (edge quantize) or ONNX file")
    parser.add_argument("--no-int8", action="store_true", help="leave the INT8 row out")
    parser.add_argument("--reference", type=Path, default=None, help="a YOLOv8n ONNX file")
    parser.add_argument("--imgsz", type=int, default=640, help="rtvp-n input size, a multiple of 32")
    parser.add_argument("--reference-imgsz", type=int, default=640, help="YOLOv8n input size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engines.runtimes import ensure_onnx

    with tempfile.TemporaryDirectory(prefix="bench-cpu-speed-") as tmp:
        work = Path(tmp)
        package = ModelPackage.load(args.model)
        fp32 = ensure_onnx(package, EngineConfig(imgsz=args.imgsz), work / "cache", data_dir=work)
        graphs = {f"{package.version} fp32": (fp32, args.imgsz)}
        if not args.no_int8:
            graphs[f"{package.version} int8"] = (int8_graph(args.int8, fp32, work, args.imgsz), args.imgsz)
        reference = reference_graph(args.reference, work, args.reference_imgsz)
        if reference is not None:
            graphs["yolov8n fp32 (reference)"] = (reference, args.reference_imgsz)
        import onnxruntime as ort

        print(f"machine: {hardware()}; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"onnxruntime {ort.__version__} CPU, {args.threads} intra-op threads, rtvp-n {args.imgsz} px, "
              f"yolov8n {args.reference_imgsz} px, {args.runs} interleaved runs after 2 warm-up calls, graph only")
        sessions, starts = {}, {}
        for i, (name, (path, _)) in enumerate(graphs.items()):
            began = time.monotonic()
            cache = work / f"ort-{i}"  # empty: the first session optimizes and saves the graph there
            sessions[name] = cpu_session(ort, path, session_options(ort, args.threads), cache)
            middle = time.monotonic()
            cpu_session(ort, path, session_options(ort, args.threads), cache)  # from the saved graph
            starts[name] = (middle - began, time.monotonic() - middle)
        views = synthetic_views(max(BATCHES))
        print(f"{'graph':<28} {'px':>4} {'batch':>5} {'p50 ms/view':>12} {'p99 ms/view':>12}   "
              f"{'start s':>8} {'start, saved optimized s':>25}")
        for batch in BATCHES:
            prepared = {}
            for size in {size for _, size in graphs.values()}:
                prepared[size] = np.empty((batch, 3, size, size), np.float32)
                letterbox_into(views[:batch], prepared[size])
            feeds = {name: {s.get_inputs()[0].name: prepared[graphs[name][1]]} for name, s in sessions.items()}
            times = interleaved_ms_per_view(sessions, feeds, batch, args.runs)
            for name, values in times.items():
                print(f"{name:<28} {graphs[name][1]:>4} {batch:>5} {percentile(values, 50):>12.1f} "
                      f"{percentile(values, 99):>12.1f}   "
                      f"{starts[name][0]:>8.2f} {starts[name][1]:>25.2f}")
        print(f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
