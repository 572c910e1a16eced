"""What a CUDA GPU gives this project: the card, training speed, inference speed, CPU parity.

    python -m bench.gpu_check [--model models/rtvp-n-synth] [--steps 20] [--runs 20]

Where PyTorch sees a CUDA GPU it prints the card's name, then
1. PyTorch CUDA training speed of RTVP-n: steps/s of full training steps (forward, loss,
   backward, AdamW, fp16 autocast as `edge train` does on a GPU) on synthetic crops;
2. ONNX Runtime CUDA inference of the shipped model, exported as bench/engines.py does:
   ms/view at batch 1 and 6, end to end (`Engine.infer`) and the graph alone;
3. parity of the CUDA outputs with ONNX Runtime on the CPU on six rendered views: the
   largest score difference of the raw outputs, and how many of the CPU's final
   detections the CUDA run reproduces (same class, IoU >= 0.9).
Part 2 and 3 need onnxruntime-gpu (`pip install glass-edge[gpu-ort]`) and say so without it.
Without a CUDA GPU it prints why and exits 0, so it can run anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.engines import hardware, measure, synthetic_views
from engines.config import EngineConfig
from engines.detections import Detections
from engines.engine import Engine
from engines.errors import EngineError
from engines.package import ModelPackage
from engines.preprocess import letterbox_into
from engines.runtimes import load_engine

ROOT = Path(__file__).resolve().parents[1]
MATCH_IOU = 0.9


def why_no_gpu() -> str | None:
    """None when PyTorch can use a CUDA GPU, else the reason in a few words."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (install a CUDA build of torch)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device (driver, CUDA_VISIBLE_DEVICES?)"
    return None


def card() -> str:
    import torch

    props = torch.cuda.get_device_properties(0)
    return (f"{props.name}, compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB, "
            f"{props.multi_processor_count} SMs; torch {torch.__version__} (CUDA {torch.version.cuda})")


def training_steps_per_s(crop: int, batch: int, steps: int) -> float:
    """Full RTVP-n training steps per second on one GPU, after 3 untimed steps."""
    import torch

    from engines.rtvp import RTVPConfig, build_model
    from engines.training.train import SCALES, param_groups

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(RTVPConfig(scale=SCALES["rtvp-n"], text_dim=384)).to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, 5e-4), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    text = torch.nn.functional.normalize(torch.randn(5, 384, device=device), dim=1)
    images = torch.rand(batch, 3, crop, crop, device=device)
    targets = [{"boxes": torch.tensor([[40.0, 40.0, 52.0, 50.0]], device=device),
                "labels": torch.tensor([i % 5], device=device)} for i in range(batch)]

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(images, text)
        loss, _ = model.loss(out, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    return float(inter / union) if union > 0 else 0.0


def matched(reference: Detections, other: Detections) -> int:
    """Reference detections that `other` reproduces: same class, IoU >= MATCH_IOU, one to one."""
    free = list(range(len(other)))
    count = 0
    for box, cls in zip(reference.boxes, reference.classes):
        hit = next((j for j in free if other.classes[j] == cls and iou(box, other.boxes[j]) >= MATCH_IOU), None)
        if hit is not None:
            free.remove(hit)
            count += 1
    return count


def parity(reference: Engine, other: Engine, views: list[np.ndarray]) -> dict:
    """Raw-output and final-detection agreement of two engines on the same views."""
    a, b = reference._input(len(views)), other._input(len(views))
    letterbox_into(views, a)
    letterbox_into(views, b)
    boxes_a, scores_a = (np.array(x) for x in reference._forward(a))  # copies: the buffers are reused
    boxes_b, scores_b = (np.array(x) for x in other._forward(b))
    ref, oth = reference.infer(views), other.infer(views)
    return {"max_score_diff": float(np.abs(scores_a - scores_b).max()),
            "max_box_diff_px": float(np.abs(boxes_a - boxes_b).max()),
            "reference_boxes": sum(len(d) for d in ref), "other_boxes": sum(len(d) for d in oth),
            "matched": sum(matched(r, o) for r, o in zip(ref, oth))}


def onnxruntime_cuda(model: Path, runs: int) -> None:
    package = ModelPackage.load(model)
    config = EngineConfig(imgsz=640, precision="fp32")
    views = synthetic_views(6)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data = Path(tmp)
        try:
            cuda = load_engine(package, config.model_copy(update={"runtime": "onnxruntime-gpu"}), data / "cache",
                               data_dir=data, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        except EngineError as exc:
            print(f"ONNX Runtime CUDA: skipped: {exc}")
            return
        cpu = load_engine(package, config, data / "cache", data_dir=data, providers=["CPUExecutionProvider"])
        print(f"ONNX Runtime CUDA, {package.version} at 640, views 700x820, {runs} runs after 2 warm-up calls:")
        for batch in (1, 6):
            chunk = views[:batch]
            e2e = statistics.mean(measure(lambda: cuda.infer(chunk), runs)) / batch
            prepared = cuda._input(batch)
            letterbox_into(chunk, prepared)
            graph = statistics.mean(measure(lambda: cuda._forward(prepared), runs)) / batch
            print(f"  batch {batch}: {e2e:.2f} ms/view end to end, {graph:.2f} ms/view graph alone")
        result = parity(cpu, cuda, views)
        print(f"parity CUDA vs CPU (6 views): max |score diff| {result['max_score_diff']:.2e}, max box diff "
              f"{result['max_box_diff_px']:.3f} px; detections matched {result['matched']} of "
              f"{result['reference_boxes']} (CPU), CUDA found {result['other_boxes']}")
        cuda.close()
        cpu.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "rtvp-n-synth")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    reason = why_no_gpu()
    if reason:
        print(f"no CUDA GPU: {reason}; nothing to measure ({hardware()})")
        return
    print(f"GPU: {card()}")
    rate = training_steps_per_s(args.crop, args.batch, args.steps)
    print(f"PyTorch CUDA training, rtvp-n, crops {args.crop}, batch {args.batch}, fp16 autocast: "
          f"{rate:.2f} steps/s ({rate * args.batch:.1f} images/s, {args.steps} steps after 3 warm-up)")
    onnxruntime_cuda(args.model, args.runs)


if __name__ == "__main__":
    main()
