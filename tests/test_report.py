"""The shift report: a synthetic shift with one bad cavity through the storage writer (real
SQLite, images in the store), `edge report` to one HTML file, rendered in Debian's headless
chromium; its counts equal `edge db stats --json`. With EDGE_UPDATE_SCREENSHOTS=1 its
screenshot goes to docs/statistics/."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from click.testing import CliRunner
from decision_support import decide, decision_book, write_config
from ui_support import CHROMEDRIVER, CHROMIUM, chromium, save_screenshot

from storage.moulds import delivered
from edge.cli import main
from edge.config import load_config
from pipeline import metrics
from pipeline.writer import RecorderAdapter
from storage.synthetic import view_image

CONTAINERS = 1600
SPACING_S = 4.5  # two hours of a slow line


@pytest.fixture(scope="module")
def shift(tmp_path_factory):
    """A stored shift: 16 cavities at 5 % defective, 3-1 at 40 % after the baseline."""
    tmp = tmp_path_factory.mktemp("report")
    path = write_config(tmp, {"keep_images": "rejects", "keep_pass_one_in": 0},
                        {"subgroup": 25, "baseline_containers": 400, "class_subgroup": 200},
                        machine={"sections": 8, "cavities": 2})
    config = load_config(path)
    adapter = RecorderAdapter(config)
    book = decision_book()
    book.reject_moulds = {"6-2"}
    rng = np.random.default_rng(5)
    start = time.monotonic_ns() - int(CONTAINERS * SPACING_S * 1e9) - 60 * 10**9
    image = view_image(1, 200, 160)
    for seq in range(1, CONTAINERS + 1):
        mould = str(delivered(seq, 8, 2))
        share = 0.4 if mould == "3-1" and seq > 400 else 0.05
        decision = decide(book, seq, mould, defect=rng.random() < share, now=start, spacing_ns=int(SPACING_S * 1e9))
        adapter.record(decision, {v: image for v in range(6)} if decision["reason"] == "defect" else {})
        if seq % 50 == 0:
            adapter.recorder.flush()
            adapter.raise_alarms(metrics)
    adapter.close()
    adapter.raise_alarms(metrics)
    return {"tmp": tmp, "config": path, "since": datetime.now(timezone.utc) - timedelta(hours=3),
            "until": datetime.now(timezone.utc)}


def test_report_counts_equal_edge_db_stats(shift):
    runner = CliRunner()
    window = ["--config", str(shift["config"])]
    out = shift["tmp"] / "report.html"
    result = runner.invoke(main, ["report", "--from", shift["since"].isoformat(), "--to", shift["until"].isoformat(),
                                  "--out", str(out), *window])
    assert result.exit_code == 0, result.output
    stats = runner.invoke(main, ["db", "stats", "--json", "--since", shift["since"].isoformat(),
                                 "--until", shift["until"].isoformat(), *window])
    expected = json.loads(stats.output)
    page = out.read_text()
    embedded = json.loads(page.split('<script type="application/json" id="counts">')[1].split("</script>")[0])
    assert embedded == expected and expected["containers"] == CONTAINERS
    assert expected["by_reason"]["mould"] == CONTAINERS // 16
    assert "cavity 3-1 out of control" in page and "cavity 3-2 out of control" not in page
    assert page.count("data:image/jpeg;base64,") >= 3 and "<svg" in page
    assert "src=\"http" not in page and "href=\"http" not in page  # self-contained


def test_report_without_a_window_names_the_options(shift):
    result = CliRunner().invoke(main, ["report", "--config", str(shift["config"])])
    assert result.exit_code == 2 and "--shift current|last, or --from" in result.output


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_report_renders_in_chromium(shift):
    from selenium.webdriver.common.by import By

    out = shift["tmp"] / "report-browser.html"
    result = CliRunner().invoke(main, ["report", "--from", shift["since"].isoformat(), "--to",
                                       shift["until"].isoformat(), "--out", str(out), "--config", str(shift["config"])])
    assert result.exit_code == 0, result.output
    stats = json.loads(CliRunner().invoke(main, ["db", "stats", "--json", "--since", shift["since"].isoformat(),
                                                 "--until", shift["until"].isoformat(),
                                                 "--config", str(shift["config"])]).output)
    driver = chromium(shift["tmp"])
    try:
        driver.get(out.as_uri())
        assert driver.find_element(By.ID, "containers").text == str(stats["containers"])
        assert driver.find_element(By.ID, "rejected").text == str(stats["rejected"])
        rows = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
                for r in driver.find_elements(By.CSS_SELECTOR, "#reasons tr")[1:]}
        assert rows == {k: str(v) for k, v in stats["by_reason"].items()}
        images = driver.find_elements(By.CSS_SELECTOR, ".examples img")
        assert images and all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images)
        assert len(driver.find_elements(By.TAG_NAME, "svg")) >= 3
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, min(height + 100, 6000))
        save_screenshot(driver, "statistics/report.png")
    finally:
        driver.quit()
