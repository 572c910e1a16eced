"""`edge gate watch`: print gate events live, to check the sensor wiring and debounce."""

from __future__ import annotations

from pathlib import Path

import click

from camera.gates.base import build_gate
from edge.config import load_config
from edge.commands import config_option


@click.group("gate")
def command() -> None:
    """The photoelectric gate."""


@command.command("watch")
@config_option("The line's config file.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after N events of the (first) gate [default: Ctrl-C].")
def watch(config_path: Path, count: int | None) -> None:
    """Print each gate event (container seq, time since the first, gap to the previous).

    With a second sensor for the right bank (gate.right_bank), its events are printed
    too, marked `right`."""
    config = load_config(config_path)
    gates = {"gate": build_gate(config.gate, config.line)}
    if config.gate.right_bank is not None:
        gates["right"] = build_gate(config.gate.right_bank, config.line)
    poll_s = 0.2 / len(gates)
    seen, first, previous = 0, None, dict.fromkeys(gates)
    click.echo(f"watching gate {config.gate.driver} (debounce {config.gate.debounce_ms:g} ms)"
               f"{' and its right-bank sensor' if 'right' in gates else ''}; Ctrl-C stops")
    try:
        for gate in gates.values():
            gate.open()
        while count is None or seen < count:
            for name, gate in gates.items():
                event = gate.wait(poll_s)
                if event is None:
                    continue
                seen += name == "gate"
                first = first if first is not None else event.t_ns
                gap = f"  gap {(event.t_ns - previous[name]) / 1e6:8.1f} ms" if previous[name] is not None else ""
                raw = f"  {event.raw!r}" if event.raw is not None else ""
                click.echo(f"{name:5} {event.seq:>8}  t {(event.t_ns - first) / 1e9:9.3f} s{gap}{raw}")
                previous[name] = event.t_ns
    except KeyboardInterrupt:
        pass
    finally:
        for gate in gates.values():
            gate.close()
    for name, gate in gates.items():
        stats = gate.stats()
        click.echo(f"{name}: events {stats['events']}, bounces {stats['bounces']}, missed {stats['missed']}, "
                   f"duplicates {stats['duplicates']}")
