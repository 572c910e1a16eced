"""Config that cannot silently weaken the line (issue 13), through `edge config check`.

Each case is the shipped config.yaml with one edit, checked by the real command: one
line naming the key (and its YAML line), exit 2; nothing that parses quietly and fails
at run, or quietly turns a fail-safe line fail-open.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import main


def check(shipped: Path, tmp_path: Path, old: str, new: str) -> tuple[int, str, str]:
    """`edge config check` on the shipped config with `old` (a regex, first match) replaced."""
    text, count = re.subn(old, new, shipped.read_text(), count=1, flags=re.M)
    assert count == 1, f"{old!r} not in config.yaml"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    return result.exit_code, result.output, text


def line_of(text: str, pattern: str, nth: int = 0) -> int:
    return [i + 1 for i, line in enumerate(text.splitlines()) if re.search(pattern, line)][nth]


def test_a_duplicated_key_is_refused_naming_both_lines(shipped_config_path, tmp_path):
    code, output, text = check(shipped_config_path, tmp_path, r"^  late_result: reject$",
                               "  late_result: reject\n  # added later, far below in a long file\n  late_result: pass")
    first, second = line_of(text, r"^  late_result:"), line_of(text, r"^  late_result:", 1)
    assert code == 2 and output.count("\n") == 1, output
    assert f"config.yaml:{second}: late_result: duplicate key (first at line {first})" in output


def test_a_duplicated_key_inside_a_camera_list_item_is_refused(shipped_config_path, tmp_path):
    code, output, text = check(shipped_config_path, tmp_path, r"view: 0, bank: left,", "view: 0, bank: left, view: 3,")
    assert code == 2 and f"config.yaml:{line_of(text, 'view: 0, bank')}: view: duplicate key" in output, output


def test_yaml_merge_keys_still_override_as_yaml_means(shipped_config_path, tmp_path):
    code, output, _ = check(shipped_config_path, tmp_path, r"^metrics:\n  address: .*$",
                            "defaults: &m {address: '127.0.0.1:9000'}\nmetrics:\n  <<: *m\n  address: 127.0.0.1:9108")
    assert code == 2 and "defaults: unknown key" in output  # parsed (merge allowed), then the extra key named


@pytest.mark.parametrize("old, new, key", [
    (r"^  thresholds: .*$", "  thresholds: {oil: 40}", "engine.thresholds.oil = 40"),
    (r"^  thresholds: .*$", "  thresholds: {oil: -1}", "engine.thresholds.oil = -1"),
    (r"^  thresholds: .*$", "  thresholds: {oil: .nan}", "engine.thresholds.oil = nan"),
    (r"^  default_threshold: .*$", "  default_threshold: 0", "engine.default_threshold = 0"),
])
def test_thresholds_outside_0_1_are_refused(shipped_config_path, tmp_path, old, new, key):
    code, output, text = check(shipped_config_path, tmp_path, old, new)
    assert code == 2 and output.count("\n") == 1, output
    assert f"config.yaml:{line_of(text, re.escape(new.strip()))}: {key}: a score threshold lies in (0, 1]" in output


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:99999", "127.0.0.1:http", ":9108"])
def test_a_metrics_address_without_a_usable_port_is_refused(shipped_config_path, tmp_path, address):
    code, output, _ = check(shipped_config_path, tmp_path, r"^  address: 127.0.0.1:9108$", f"  address: '{address}'")
    assert code == 2 and output.count("\n") == 1 and "metrics.address" in output and "host:port" in output, output


@pytest.mark.parametrize("address", ["0.0.0.0:9108", "192.168.1.20:9108", "line-pc.plant:9108"])
def test_metrics_open_to_the_network_needs_an_explicit_opt_in(shipped_config_path, tmp_path, address):
    code, output, _ = check(shipped_config_path, tmp_path, r"^  address: 127.0.0.1:9108$", f"  address: {address}")
    assert code == 2 and output.count("\n") == 1 and "metrics.allow_remote: true" in output, output
    code, output, _ = check(shipped_config_path, tmp_path, r"^  address: 127.0.0.1:9108$",
                            f"  address: {address}\n  allow_remote: true")
    assert code == 0 and f"warning: metrics.address {address} is reachable from other machines" in output


@pytest.mark.parametrize("url, why", [
    ("postgresql://line:s3cret@db:99999/edge", "not a SQLAlchemy URL"),
    ("sqlite//no-slashes", "not a SQLAlchemy URL"),
    ("mysql://line:s3cret@db/edge", "database 'mysql' is not supported"),
    ("postgresql+nodriver://line:s3cret@db/edge", "driver 'postgresql+nodriver' cannot be loaded"),
])
def test_a_database_url_is_checked_without_echoing_its_password(shipped_config_path, tmp_path, url, why):
    code, output, text = check(shipped_config_path, tmp_path, r"^  database: \S+", f"  database: '{url}'")
    assert code == 2 and output.count("\n") == 1, output
    assert f"config.yaml:{line_of(text, r'^  database:')}: storage.database: {why}" in output
    assert "s3cret" not in output
