"""`edge quantize MODEL --calibrate VIEWS --data LABELLED`: an INT8 version for CPU line PCs.

ONNX Runtime static quantization (engines/quantize.py), registered as a new model version
only when `edge eval`'s AP50-95 on --data drops by at most --max-ap-loss; activate it
with `edge model activate` (or --activate).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from edge.commands import config_option, engine_setup
from engines.quantize import CALIBRATION_VIEWS, MAX_AP_LOSS


@click.command("quantize")
@click.argument("model", default="active")
@click.option("--calibrate", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Views to calibrate on: a captured batch, a folder of images, or a synth set.")
@click.option("--data", type=click.Path(path_type=Path, exists=True), required=True,
              help="Labelled views for the AP gate (as for `edge eval --data`), not the calibration views.")
@click.option("--views", type=int, default=CALIBRATION_VIEWS, show_default=True,
              help="Calibration views, spread evenly over --calibrate.")
@click.option("--max-ap-loss", type=float, default=MAX_AP_LOSS, show_default=True,
              help="AP50-95 the INT8 model may lose, absolute (0.01 = one AP point).")
@click.option("--imgsz", type=int, default=None, help="Input size [default: config.yaml's engine.imgsz].")
@click.option("--version", "version", default=None, help="Version name [default: MODEL's version + '-int8'].")
@click.option("--force", is_flag=True, help="Register it even when it loses more AP than allowed.")
@click.option("--activate", "make_active", is_flag=True, help="Also make it the live model.")
@config_option("config.yaml: engine settings (imgsz, threads) and the data folder.")
def command(model: str, calibrate: Path, data: Path, views: int, max_ap_loss: float, imgsz: int | None,
            version: str | None, force: bool, make_active: bool, config_path: Path) -> None:
    """Quantize MODEL (active, a version, or a package folder) to INT8 for ONNX Runtime."""
    from engines.quantize import quantize_package
    from engines.registry import Registry

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config, data_dir = engine_setup(config_path)
    config = config.model_copy(update={"imgsz": imgsz or config.imgsz})
    registry = Registry(data_dir)
    package = quantize_package(registry.resolve(model), calibrate, data, config, data_dir, version=version,
                               views=views, max_ap_loss=max_ap_loss, force=force, progress=True)
    result = package.manifest["quantization"]["eval"]
    click.echo(f"registered {package.version} (INT8, parent {package.manifest['parent']}): {result['verdict']}")
    if make_active:
        registry.activate(package.version)
        click.echo(f"active model: {package.version}")
