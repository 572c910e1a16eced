"""`edge export MODEL`: write the model's deploy graph to ONNX for a vocabulary.

A new defect name needs no training: its text embedding is computed, baked into the
graph as constants, and the graph is re-exported in seconds. ONNX Runtime and
TensorRT then run that file; they refuse one exported for another vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge.commands import config_option
from edge.commands import engine_setup
from edge.commands.detect import parse_vocab, vocab_option
from engines.errors import EngineError


def parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        batch = int(value)
    except ValueError:
        batch = 0
    if batch < 1:
        raise EngineError(f"--batch {value!r}: a number of views (e.g. 6) or 'dynamic'")
    return batch


@click.command("export")
@click.argument("model", default="active")
@vocab_option
@click.option("--imgsz", type=int, default=None, help="Input size, a multiple of 32 [default: engine.imgsz].")
@click.option("--batch", default="dynamic", show_default=True,
              help="A fixed batch size, or 'dynamic' (1..N at run time; TensorRT profiles 1..6).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write [default: where the runtimes look for it, next to the model "
                   "or in <data_dir>/cache].")
@config_option("config.yaml: engine settings and the data folder (defaults apply when the file is absent).")
def command(model: str, vocab: str | None, imgsz: int | None, batch: str, out: Path | None,
            config_path: Path) -> None:
    """Export MODEL (active, a version, or a package folder) to ONNX with the vocabulary baked in."""
    import time

    from engines.export import export_onnx, vocabulary_embeddings
    from engines.registry import Registry
    from engines.runtimes import artifact_dir, onnx_name

    config, data_dir = engine_setup(config_path)
    package = Registry(data_dir).resolve(model)
    imgsz = imgsz or config.imgsz
    fixed = parse_batch(batch)
    started = time.monotonic()
    vocabulary, embeddings = vocabulary_embeddings(package, parse_vocab(vocab))
    out = out or artifact_dir(package, data_dir / "cache", data_dir) / onnx_name(
        package, vocabulary, embeddings, imgsz, fixed)
    path = export_onnx(package, out, vocabulary=vocabulary, imgsz=imgsz, batch=fixed)
    click.echo(f"{path}: {package.version}, {len(vocabulary)} classes ({', '.join(vocabulary)}), "
               f"{imgsz}x{imgsz}, batch {fixed or 'dynamic'}, {path.stat().st_size / 1e6:.1f} MB, "
               f"{time.monotonic() - started:.1f} s")
