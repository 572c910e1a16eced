"""bench/gpu_check.py: says why and exits 0 without a GPU; its parity measure on two CPU engines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import parity, why_no_gpu
from engines.config import EngineConfig
from engines.runtimes import load_engine
from engines_support import IMGSZ, make_package, views

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(why_no_gpu() is None, reason="a CUDA GPU is present: the check measures instead")
def test_without_a_gpu_it_says_why_and_exits_0() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.gpu_check"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("no CUDA GPU: torch ") and run.stdout.count("\n") == 1


def test_parity_of_an_engine_with_itself_is_exact(tmp_path: Path) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    config = EngineConfig(imgsz=IMGSZ, default_threshold=0.05)
    images = views([(820, 700)] * 6)
    with load_engine(package, config, tmp_path / "data" / "cache") as a, \
            load_engine(package, config, tmp_path / "data" / "cache") as b:
        result = parity(a, b, images)
    assert result["max_score_diff"] == 0 and result["max_box_diff_px"] == 0
    assert result["reference_boxes"] > 0 and result["matched"] == result["reference_boxes"] == result["other_boxes"]
