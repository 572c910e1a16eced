"""`edge engine build MODEL`: build the TensorRT engine ahead of time, on the line PC.

Building takes minutes; doing it at installation, not at the first container, keeps
the start of a shift quick. The engine is cached next to the model (or in
<data_dir>/cache), keyed by ONNX hash, TensorRT version, GPU and precision.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge.commands import config_option
from edge.commands import engine_setup
from edge.commands.detect import parse_vocab, vocab_option


@click.group("engine")
def command() -> None:
    """Build runtime engines ahead of time (TensorRT)."""


@command.command("build")
@click.argument("model", default="active")
@click.option("--precision", type=click.Choice(["fp16", "int8", "fp32"]), default=None,
              help="[default: engine.precision from the config]")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="INT8 only: a captured batch (or folder of views) to calibrate on.")
@vocab_option
@config_option("config.yaml: engine settings and the data folder (defaults apply when the file is absent).")
def build(model: str, precision: str | None, calibration: Path | None, vocab: str | None,
          config_path: Path) -> None:
    """Export MODEL if needed and build (or validate) its TensorRT engine."""
    from engines.runtimes import open_engine

    config, data_dir = engine_setup(config_path)
    config = config.model_copy(update={"runtime": "tensorrt", **({"precision": precision} if precision else {})})
    with open_engine(model, config, data_dir, vocabulary=parse_vocab(vocab), calibration=calibration) as engine:
        click.echo(f"TensorRT engine ready for {engine.version} ({config.precision}, "
                   f"{', '.join(engine.vocabulary)})")
