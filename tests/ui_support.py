"""Helpers for the browser tests (a module, not a test file): a real line with a scripted
engine, `edge ui` beside it, and Debian's chromium driven headless by selenium with the system
chromedriver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from line_support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


def save_screenshot(driver, docs_path: str) -> Path:
    """A page's picture: into docs/<docs_path> with EDGE_UPDATE_SCREENSHOTS=1 (refreshing what
    the docs show), else under the temp folder, so a test run leaves the working tree as it was."""
    root = ROOT / "docs" if os.environ.get("EDGE_UPDATE_SCREENSHOTS") == "1" else \
        Path(tempfile.gettempdir()) / "edge-screenshots"
    target = root / docs_path
    target.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(target)), f"chromium wrote no screenshot to {target}"
    return target
TESTS = Path(__file__).resolve().parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
VOCABULARY = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")


class ScriptedEngine:
    """No model: one view in twelve gets two defects of different classes well above their
    threshold (the container is rejected), the others a box well below it, so the pages show
    both kinds of box and the review page has two boxes to move and reclassify."""

    version = "scripted-1"
    vocabulary = VOCABULARY

    def __init__(self, config=None) -> None:
        self.calls = 0

    def infer(self, images):
        from engines.detections import Detections

        out = []
        for image in images:
            self.calls += 1
            h, w = image.shape[:2]
            boxes = [[w * 0.3, h * 0.4, w * 0.3 + 60, h * 0.4 + 45]]
            scores, classes = [0.9 if self.calls % 12 == 5 else 0.2], [self.calls % 5]
            if self.calls % 12 == 5:
                boxes.append([w * 0.55, h * 0.15, w * 0.55 + 70, h * 0.15 + 50])
                scores.append(0.7)
                classes.append((self.calls + 2) % 5)
            out.append(Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes),
                                  VOCABULARY))
        return out

    def close(self) -> None:
        pass


def run_line(config_path: str, containers: str) -> None:
    """`edge run` with the scripted engine: what a subprocess of the tests runs."""
    import logging

    from edge.config import load_config
    from edge.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Supervisor(load_config(config_path), containers=int(containers),
               options={"engine_factory": ScriptedEngine}, echo=print).run()


def write_config(tmp: Path, speed_cpm: float = 60, travel_ms: float = 1500) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"]["data_dir"] = str(tmp / "data")
    raw["storage"]["keep_pass_one_in"] = 4  # some passed containers to review too
    raw["line"].update(speed_cpm=speed_cpm, travel_time_ms=travel_ms)
    # Named per class: the decision stage applies config thresholds only (the engine filters the rest).
    raw["engine"].update(default_threshold=0.5, thresholds={name: 0.5 for name in VOCABULARY})
    raw["metrics"]["address"] = f"127.0.0.1:{free_port()}"
    raw["ui"] = {"port": free_port()}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def child_env() -> dict[str, str]:
    """This checkout and these helpers on the path of a child process, installed or not."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}


def start_line(tmp: Path, config: Path, containers: int) -> subprocess.Popen:
    log = open(tmp / "line.log", "w")
    return subprocess.Popen([sys.executable, "-c", "import sys, ui_support as s; s.run_line(*sys.argv[1:])",
                             str(config), str(containers)], stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
                            env=child_env())


def start_ui(tmp: Path, config: Path, port: int) -> subprocess.Popen:
    import urllib.request

    log = open(tmp / "ui.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "ui", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp, env=child_env())

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError("edge ui exited:\n" + (tmp / "ui.log").read_text()[-3000:])
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=1).status == 200
        except OSError:
            return False

    wait_for(up, 60, "edge ui to listen", every=0.1)
    return proc


def chromium(tmp: Path):
    """Headless chromium from Debian, nothing downloaded: selenium is given both binaries."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={tmp / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
