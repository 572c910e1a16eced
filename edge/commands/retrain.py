"""`edge retrain --samples DIR | --from-db`: fine-tune the active model, promote it only if not worse."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import click

from edge.commands import config_option
from edge.config import ConfigError, load_config

log = logging.getLogger(__name__)


@click.command("retrain")
@click.option("--samples", type=click.Path(path_type=Path, exists=True), default=None,
              help="New labelled views: a captured batch with labels.json, a COCO file or YOLO folder.")
@click.option("--from-db", is_flag=True, help="Use the views labelled in the line's database.")
@click.option("--since", type=click.DateTime(), default=None, help="With --from-db: containers from this UTC time on.")
@click.option("--holdout", type=click.Path(path_type=Path, exists=True), default=None,
              help="Fixed held-out set for the comparison (default: 20% of the new containers "
                   "plus as many from the earlier data).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--replay-share", type=float, default=0.5, show_default=True,
              help="Share of the fine-tuning set drawn from the data the active model learnt from.")
@click.option("--crop", type=int, default=320, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--target-fr", type=float, default=0.01, show_default=True)
@click.option("--threads", type=int, default=None, help="Torch CPU threads (1 on a shared machine).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Training time budget: stop after the step that passes it, then evaluate and compare as usual.")
@click.option("--force", is_flag=True, help="Activate the new model even if it is worse (logged).")
@config_option("config.yaml naming the data folder.")
def command(samples: Path | None, from_db: bool, since: datetime | None, holdout: Path | None, epochs: int,
            replay_share: float, crop: int, batch: int, lr: float, target_fr: float, threads: int | None,
            max_minutes: float | None, force: bool, config_path: Path) -> None:
    """Fine-tune the active model on new samples (+ replay), compare both on one held-out
    set, register the new version and activate it only if it is not worse on escape
    rate and AP (or with --force). Running workers switch to it without a restart."""
    import torch

    from engines.training.datasets import load_labels
    from engines.training.evaluate import pct
    from engines.training.retrain import retrain
    from storage.recorded_labels import labels_from_db
    from engines.registry import Registry

    if bool(samples) == from_db:
        raise ConfigError("give exactly one of --samples DIR or --from-db")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        torch.set_num_threads(threads)
    app = load_config(config_path)
    if from_db:
        since_utc = since.replace(tzinfo=timezone.utc) if since else None
        labels, source = labels_from_db(app.database_url, app.data_dir, since_utc), f"database since {since or 'start'}"
    else:
        labels, source = load_labels(samples), str(samples)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    result = retrain(labels, source, Registry(app.data_dir), app.engine, app.data_dir,
                     out=app.data_dir / "retrain" / stamp, epochs=epochs, crop=crop, batch=batch, lr=lr,
                     replay_share=replay_share, holdout=load_labels(holdout) if holdout else None,
                     target_fr=target_fr, force=force, threads=threads, max_minutes=max_minutes)
    if result.stopped:
        click.echo(f"training stopped on the time budget (--max-minutes {max_minutes:g}) before its last step; "
                   "the model it had is evaluated below")
    for name, figures in ((f"new   {result.package.version}", result.new), ("active before", result.active)):
        rates = figures["at_target"]
        click.echo(f"{name}: AP {figures['ap']:.3f}  escape rate {pct(rates['escape_rate'])}  false reject rate "
                   f"{pct(rates['false_reject_rate'])} (at false rejects <= {pct(target_fr)})")
    verdict = "activated" if result.promoted else "registered, NOT activated"
    click.echo(f"{result.package.version} {verdict}: {result.reason}" + (" (--force)" if force else ""))
