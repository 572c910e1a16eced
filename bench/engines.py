"""Views per second and latency of each available runtime on the same RTVP model.

    python -m bench.engines [--model PACKAGE] [--scale n] [--imgsz 640] [--threads 2] [--runs 20]

For every runtime that loads here (onnxruntime, torch, tensorrt where a GPU and
TensorRT are present) and batch 1 and 6 (one container), it prints views/s and p50/p99
latency per call, end to end (letterbox + graph + decode/NMS, `Engine.infer`) and for
the graph alone, then the ONNX Runtime / PyTorch ratio. Views are 700 x 820 renders of
the synthetic glass line. Without --model an untrained RTVP of --scale is used: speed
does not depend on the weights (decode/NMS cost does a little: thresholds are set so
that a realistic handful of boxes survive).

The machine, its load average and the ONNX Runtime providers are printed with the
figures; on a shared machine say so when quoting them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This file's name would shadow the `engines` package when run as a script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from engines.config import EngineConfig  # noqa: E402
from engines.errors import EngineError  # noqa: E402
from engines.package import ModelPackage  # noqa: E402
from engines.preprocess import letterbox_into  # noqa: E402
from engines.runtimes import RUNTIMES, load_engine  # noqa: E402

CLASSES = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {gpu}"


def untrained_package(root: Path, scale: str, imgsz: int) -> ModelPackage:
    import torch

    from engines.rtvp import RTVPConfig, build_model

    torch.manual_seed(0)
    config = RTVPConfig(scale=scale, imgsz=imgsz)
    text = torch.nn.functional.normalize(torch.randn(len(CLASSES), config.text_dim), dim=-1).numpy()
    return ModelPackage.create(root / "models" / f"bench-{scale}", version=f"bench-{scale}",
                               state_dict=build_model(config).state_dict(), arch=config.to_dict(),
                               vocabulary=list(CLASSES), embeddings=text)


def synthetic_views(n: int) -> list[np.ndarray]:
    from camera.synth import GlassRenderer

    renderer = GlassRenderer()
    return [renderer.render(renderer.container(seed=1, seq=i // 6), view=i % 6).image for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def interleaved_ms_per_view(sessions: dict, feeds: dict[str, dict], batch: int, runs: int,
                            warmup: int = 2) -> dict[str, list[float]]:
    """ONNX Runtime sessions timed round-robin (one call of each per round, so a shared
    machine's load falls on all alike): ms per view of each timed call, after `warmup` rounds."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for round_ in range(warmup + runs):
        for name, session in sessions.items():
            began = time.perf_counter()
            session.run(None, feeds[name])
            if round_ >= warmup:
                times[name].append((time.perf_counter() - began) * 1000 / batch)
    return times


def measure(call, runs: int, warmup: int = 2) -> list[float]:
    """Milliseconds per call (monotonic clock), after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.monotonic_ns()
        call()
        times.append((time.monotonic_ns() - start) / 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a model package folder [default: untrained RTVP]")
    parser.add_argument("--scale", default="n", choices=["tiny", "n", "s"])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        data = Path(tmp)
        package = ModelPackage.load(args.model) if args.model else untrained_package(data, args.scale, args.imgsz)
        config = EngineConfig(imgsz=args.imgsz, threads=args.threads, default_threshold=0.25)
        views = synthetic_views(6)
        print(f"machine: {hardware()}; load average {os.getloadavg()[0]:.1f}")
        print(f"model: {package.version} ({package.arch.get('scale')}), input {args.imgsz}x{args.imgsz}, "
              f"views 700x820, {args.threads} threads, {args.runs} runs after 2 warm-up calls")
        print(f"{'runtime':<12} {'batch':>5} {'views/s':>8} {'p50 ms':>8} {'p99 ms':>8}   "
              f"{'graph views/s':>13} {'p50 ms':>8}   detail")
        rates: dict[tuple[str, int], float] = {}
        for runtime in args.runtimes.split(","):
            try:
                engine = load_engine(package, config.model_copy(update={"runtime": runtime}), data / "cache",
                                     data_dir=data)
            except EngineError as exc:
                print(f"{runtime:<12} skipped: {exc}")
                continue
            detail = ", ".join(getattr(engine, "providers", [])) or str(getattr(engine, "device", ""))
            for batch in (1, 6):
                chunk = views[:batch]
                e2e = measure(lambda: engine.infer(chunk), args.runs)
                # The graph alone on an already letterboxed batch: runtime cost without pre/post.
                prepared = engine._input(batch)
                letterbox_into(chunk, prepared)
                graph = measure(lambda: engine._forward(prepared), args.runs)
                rates[runtime, batch] = batch * 1000 / statistics.mean(e2e)
                print(f"{runtime:<12} {batch:>5} {rates[runtime, batch]:>8.2f} {percentile(e2e, 50):>8.0f} "
                      f"{percentile(e2e, 99):>8.0f}   {batch * 1000 / statistics.mean(graph):>13.2f} "
                      f"{percentile(graph, 50):>8.0f}   {detail}")
            engine.close()
        for batch in (1, 6):
            if ("onnxruntime", batch) in rates and ("torch", batch) in rates:
                ratio = rates["onnxruntime", batch] / rates["torch", batch]
                print(f"batch {batch}: ONNX Runtime / PyTorch eager = {ratio:.2f}x views/s")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
