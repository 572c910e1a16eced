"""`edge eval MODEL --data ...`: COCO AP and the line's escape / false-reject rates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edge.commands import config_option, engine_setup


@click.command("eval")
@click.argument("model", default="active")
@click.option("--data", "data", type=click.Path(path_type=Path, exists=True), required=True,
              help="Labelled views: a COCO JSON, or a folder (labels.json, YOLO, synth output, batch).")
@click.option("--vocab", default=None, help="Comma-separated class names to prompt (default: the model's).")
@click.option("--split", "split", type=click.Path(path_type=Path), default=None,
              help="Zero-shot: prompt the split file's novel names only, on images with novel defects.")
@click.option("--target-fr", type=float, default=0.01, show_default=True,
              help="False-reject rate to hold (share of good containers).")
@click.option("--calibrate", is_flag=True, help="Write per-class thresholds for --target-fr into the model package.")
@click.option("--runtime", type=click.Choice(["onnxruntime", "tensorrt", "torch"]), default=None,
              help="Runtime (default: config.yaml's engine.runtime).")
@click.option("--imgsz", type=int, default=None, help="Input size (default: config.yaml's engine.imgsz).")
@click.option("--batch", type=int, default=6, show_default=True, help="Views per forward pass.")
@click.option("--record", default=None,
              help="Also store the figures in the package manifest under metrics.RECORD (e.g. test).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the figures here.")
@config_option("config.yaml naming the data folder.")
def command(model: str, data: Path, vocab: str | None, split: Path | None, target_fr: float, calibrate: bool,
            runtime: str | None, imgsz: int | None, batch: int, record: str | None, json_out: Path | None,
            config_path: Path) -> None:
    """Evaluate MODEL (active, a registered version, or a package folder) on labelled views.

    Prints COCO AP, AP50, AP75, APs and per-class AP (pycocotools), and the container
    escape and false-reject rates at the configured thresholds and at the threshold
    that holds false rejects to --target-fr.
    """
    from engines.training.retrain import evaluate_package
    from engines.registry import Registry

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engine_config, data_dir = engine_setup(config_path)
    updates = {k: v for k, v in (("runtime", runtime), ("imgsz", imgsz)) if v is not None}
    engine_config = engine_config.model_copy(update=updates)
    package = Registry(data_dir).resolve(model)
    vocabulary = [v.strip() for v in vocab.split(",")] if vocab else None
    metrics = evaluate_package(package, data, engine_config, data_dir, vocabulary=vocabulary, split=split,
                               target_fr=target_fr, calibrate=calibrate, batch=batch, progress=True)
    from engines.training.evaluate import format_report

    click.echo(f"model {package.version} on {data} ({engine_config.runtime}, {engine_config.imgsz}px)")
    for line in format_report(metrics):
        click.echo(line)
    if calibrate:
        click.echo(f"per-class thresholds written to {package.path / 'manifest.json'}: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in metrics["calibrated"]["thresholds"].items()))
    if json_out:
        json_out.write_text(json.dumps(metrics, indent=2))
    if record:
        package.update(metrics={**package.manifest.get("metrics", {}),
                                record: {**metrics, "data": str(data), "runtime": engine_config.runtime,
                                         "imgsz": engine_config.imgsz}})
        click.echo(f"figures stored in {package.path / 'manifest.json'} under metrics.{record}")
