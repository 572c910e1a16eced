"""A short compressed shift (bench/soak.py): a random stage killed -9 every few seconds while
600 containers pass at 20/s; nothing undecided, unrecorded or silently not ejected."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from line_support import ROOT


@pytest.mark.timeout(600)
def test_short_soak_loses_nothing(tmp_path):
    run = subprocess.run([sys.executable, "-m", "bench.soak", "--containers", "600", "--rate", "20",
                          "--kill-every", "4", "8", "--warmup", "3", "--seed", "3", "--data", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert sum(result["kills"].values()) >= 3, result["kills"]
    assert result["gated"] == result["decided"] == result["recorded"] == 600, result
    assert result["duplicate_rows"] == 0 and result["undecided"] == 0 and result["unrecorded"] == 0
    assert result["silent"] == 0 and result["rejects"] == result["pulsed"] + result["alarmed"]
    assert result["images_purged"] > 0  # the quota was enforced while the line ran
    assert result["exit_code"] == 0
