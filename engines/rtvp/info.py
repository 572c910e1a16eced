"""What a model is made of: parameters per paper component and a FLOPs estimate.

Used by `edge model info` and the docs' figures. FLOPs come from
torch.utils.flop_counter on one eval forward at the model's input size (convolutions
and matrix products; element-wise ops are not counted), reported as GFLOPs
(1 multiply-add = 2 FLOPs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engines.rtvp.model import RTVP

COMPONENTS = {
    "expert": "expert CNN (YOLOv8 backbone)",
    "sam": "Mobile-SAM image encoder",
    "adapter.sampler": "multi-scale sampling",
    "adapter.decoders": "reconstruction decoder",
    "prompt.scorers": "CBAM scorer",
    "prompt.fusion": "visual-prompt fusion",
    "neck": "text-guided PAN",
    "head": "contrastive head",
    "aux": "aux CIoU head (training only)",
}


def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _get(model: nn.Module, dotted: str) -> nn.Module | None:
    for part in dotted.split("."):
        model = getattr(model, part, None)
        if model is None:
            return None
    return model


def summarize(model: RTVP, imgsz: int | None = None, vocabulary_size: int = 5,
              flops: bool = True) -> dict[str, Any]:
    """-> {"arch", "imgsz", "params": {component: count}, "params_total", "params_inference",
    "trainable", "gflops" (None when flops=False)}."""
    imgsz = imgsz or model.config.imgsz
    params = {name: _count(_get(model, name)) for name in COMPONENTS}
    total = _count(model)
    summary: dict[str, Any] = {
        "arch": model.config.to_dict(),
        "imgsz": imgsz,
        "params": params,
        "params_total": total,
        "params_inference": total - params["aux"],
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "gflops": None,
    }
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        was_training = model.training
        model.eval()
        text = torch.nn.functional.normalize(torch.randn(vocabulary_size, model.config.text_dim), dim=-1)
        images = torch.zeros(1, 3, imgsz, imgsz, device=next(model.parameters()).device)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(images, text)
        model.train(was_training)
        summary["gflops"] = counter.get_total_flops() / 1e9
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for the CLI."""
    arch = summary["arch"]
    lines = [f"RTVP scale {arch['scale']}, SAM {arch['sam']}"
             f"{' (frozen, ' + str(arch['sam_checkpoint']) + ')' if arch['sam_frozen'] else ' (trainable)'}, "
             f"text dim {arch['text_dim']}, input {summary['imgsz']}x{summary['imgsz']}"]
    for name, label in COMPONENTS.items():
        lines.append(f"  {label:<34} {summary['params'][name] / 1e6:8.3f} M")
    lines.append(f"  {'total':<34} {summary['params_total'] / 1e6:8.3f} M "
                 f"(inference {summary['params_inference'] / 1e6:.3f} M, trainable {summary['trainable'] / 1e6:.3f} M)")
    if summary["gflops"] is not None:
        lines.append(f"  FLOPs per view: {summary['gflops']:.1f} GFLOPs")
    return "\n".join(lines)
