"""`edge train --data PATH --model rtvp-n --epochs N`: train RTVP and write a model package."""

from __future__ import annotations

import os
from pathlib import Path

import click

from engines.training.train import SCALES, TrainConfig


@click.command("train")
@click.option("--data", type=click.Path(path_type=Path, exists=True), required=True,
              help="Labelled views: a COCO JSON, or a folder (edge synth output, YOLO, captured batch).")
@click.option("--model", type=click.Choice(list(SCALES)), default="rtvp-n", show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--imgsz", type=int, default=640, show_default=True, help="Inference size (whole view letterboxed).")
@click.option("--crop", type=int, default=320, show_default=True,
              help="Training crop side at native resolution (views are never shrunk).")
@click.option("--batch", type=int, default=8, show_default=True, help="Crops per step (per GPU under torchrun).")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--val", type=click.Path(path_type=Path, exists=True), default=None,
              help="Validation set (default: 10% of the training containers held out).")
@click.option("--val-every", type=int, default=1, show_default=True, help="Validate every N epochs.")
@click.option("--save-every", type=int, default=0, show_default=True,
              help="Also checkpoint every N steps (0: at epoch ends only).")
@click.option("--split", type=click.Path(path_type=Path), default=None,
              help='Zero-shot split file {"base": [...], "novel": [...]}: train on base names only.')
@click.option("--sam-ckpt", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Mobile-SAM weights (mobile_sam.pt): loaded and frozen, as in the paper.")
@click.option("--text-encoder", type=click.Choice(["minilm", "clip"]), default="minilm", show_default=True)
@click.option("--prompts", type=click.Choice(["names", "catalogue"]), default="names", show_default=True,
              help="catalogue: each step prompts every class by its name, a synonym or its description "
                   "(camera/defect_catalogue.yaml); the package ships their average.")
@click.option("--generic-share", type=float, default=0.0, show_default=True,
              help='Share of steps that prompt only "defect", with every box labelled by it.')
@click.option("--name-share", type=click.FloatRange(0, 1), default=None,
              help="With --prompts catalogue: share of class prompts that use the name, the rest "
                   "synonyms and description (default: all texts alike).")
@click.option("--negative-crops", type=click.FloatRange(0, 1), default=TrainConfig.negative_crops,
              show_default=True,
              help="Share of crops centred on a look-alike that must pass (water drop, dust), on views "
                   "whose labels name them (edge synth --catalogue full does).")
@click.option("--init", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Start from this model package's weights (fine-tuning); its version is the parent.")
@click.option("--p2", is_flag=True,
              help="Add a fourth head level at stride 4 for thin and small defects (about 40% more "
                   "compute); with --init, the start model's weights load and only that level starts untrained.")
@click.option("--text-ckpt", type=click.Path(path_type=Path, exists=True), default=None,
              help="Local CLIP checkpoint folder (with --text-encoder clip).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("runs/train"),
              show_default=True, help="Checkpoints, history and the model package go here.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt exactly where it stopped.")
@click.option("--workers", type=int, default=0, show_default=True, help="Data-loader processes.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads (1 on a shared machine).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--version", default=None, help="Version name of the package (default: MODEL-<UTC time>).")
@click.option("--half-weights", is_flag=True, help="Store fp16 weights in the package (half the size).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (a time budget).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after the step that passes this many minutes; --resume continues the schedule.")
def command(**options) -> None:
    """Train an RTVP detector on labelled views and write a model package into OUT.

    Runs on the CPU, on one GPU (mixed precision), or on several with
    `torchrun --nproc_per_node N -m edge.cli train ...` (DistributedDataParallel).
    Label problems (corrupt image, box outside the image, unknown class) are skipped
    before the first step and listed in OUT/skipped.txt.
    """
    from engines.training.train import train

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = train(TrainConfig(**options))
    if result.stopped:
        click.echo(f"stopped on the time budget (--max-minutes {options['max_minutes']:g}); "
                   "run again with --resume to continue")
    if result.package is not None:
        val = result.package.manifest["metrics"]["val"]
        click.echo(f"model package: {result.package.path}")
        if val:
            click.echo(f"validation: AP {val['ap']:.3f}  AP50 {val['ap50']:.3f}  escape "
                       f"{val['at_target']['escape_rate']} at false rejects <= {val['at_target']['target_false_reject_rate']}")
        click.echo(f"register it with: edge model register {result.package.path}  (or `edge eval` it first)")
