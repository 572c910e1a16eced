"""`edge gate watch`: print gate events live, to check the sensor wiring and debounce."""

from __future__ import annotations

from pathlib import Path

import click

from camera.gates.base import build_gate
from edge.config import DEFAULT_PATH, load_config


@click.group("gate")
def command() -> None:
    """The photoelectric gate."""


@command.command("watch")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_PATH,
              show_default=True, help="The line's config file.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N events [default: Ctrl-C].")
def watch(config_path: Path, count: int | None) -> None:
    """Print each gate event (container seq, time since the first, gap to the previous)."""
    config = load_config(config_path)
    gate = build_gate(config.gate, config.line)
    seen, first, previous = 0, None, None
    click.echo(f"watching gate {config.gate.driver} (debounce {config.gate.debounce_ms:g} ms); Ctrl-C stops")
    with gate:
        try:
            while count is None or seen < count:
                event = gate.wait(0.2)
                if event is None:
                    continue
                seen += 1
                first = first if first is not None else event.t_ns
                gap = f"  gap {(event.t_ns - previous) / 1e6:8.1f} ms" if previous is not None else ""
                raw = f"  {event.raw!r}" if event.raw is not None else ""
                click.echo(f"container {event.seq:>8}  t {(event.t_ns - first) / 1e9:9.3f} s{gap}{raw}")
                previous = event.t_ns
        except KeyboardInterrupt:
            pass
        stats = gate.stats()
    click.echo("events {events}, bounces {bounces}, missed {missed}, duplicates {duplicates}".format(**stats))
