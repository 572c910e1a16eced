"""The operator station in a real browser against a running line: Debian's chromium, headless,
driven by selenium, on `edge ui` beside a real supervisor (synthetic cameras, simulated gate,
a scripted engine, SQLite, the relay on a pty). With EDGE_UPDATE_SCREENSHOTS=1,
screenshots of every page go to docs/operator/."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from edge.ui.users import add_user
from engines.training.progress import Progress, write_progress
from storage.draw import colour
from storage.db import open_database
from engines.registry import DEFAULT_MODEL, Registry
from line_support import db_rows, wait_for
from ui_support import (CHROMEDRIVER, CHROMIUM, child_env, chromium, save_screenshot, start_line, start_ui, stop,
                        write_config)

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
CONTAINERS = 45
PASSWORD = "correct horse"
# Records the moment each reject card is inserted, in the browser's clock (the same machine's).
OBSERVE = """
window.seen = {};
new MutationObserver(() => document.querySelectorAll('#rejects .reject-card').forEach(card => {
  if (!(card.dataset.seq in window.seen)) window.seen[card.dataset.seq] = Date.now();
})).observe(document.getElementById('rejects'), {childList: true});
"""


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("station")
    config = write_config(tmp)
    from edge.config import load_config

    app = load_config(config)
    Registry(app.data_dir).ensure_default()  # the models page lists the shipped model
    db = open_database(app.database_url)
    add_user(db, "olga", "operator", PASSWORD)
    db.close()
    ui = start_ui(tmp, config, app.ui.port)  # first, so it hears the first decision
    proc = start_line(tmp, config, CONTAINERS)
    driver = chromium(tmp)
    yield {"tmp": tmp, "config": config, "data": app.data_dir, "url": f"http://127.0.0.1:{app.ui.port}",
           "driver": driver, "line": proc}
    driver.quit()
    stop(proc)
    stop(ui)


def shot(driver, name: str) -> None:
    save_screenshot(driver, f"operator/{name}.png")


def sign_in(driver, url: str, name: str, password: str) -> None:
    driver.get(url + "/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()


def test_operator_station(line):
    d, url, data = line["driver"], line["url"], line["data"]
    # The live page swaps its health and counters panels in over SSE; an element found just
    # before a swap goes stale, so the waits look again rather than fail.
    wait = WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,))

    # A wrong password is refused; the right one opens the live page.
    sign_in(d, url, "olga", "not her password")
    assert "Wrong name or password" in wait.until(ec.presence_of_element_located((By.ID, "login-error"))).text
    shot(d, "login")
    sign_in(d, url, "olga", PASSWORD)
    wait.until(ec.presence_of_element_located((By.ID, "rejects")))
    d.execute_script(OBSERVE)

    # Rejects appear within 2 s of their decision (decision time: gate + gate-to-decision latency).
    wait_for(lambda: len(d.execute_script("return window.seen")) >= 8, 90, "eight rejects on the live page")
    seen = d.execute_script("return window.seen")
    listed = ",".join(str(int(seq)) for seq in seen)
    wait_for(lambda: db_rows(data, f"SELECT count(*) FROM containers WHERE seq IN ({listed})")[0][0] == len(seen),
             10, "the writer committing every container seen on the page")
    delays = []
    for card in d.find_elements(By.CSS_SELECTOR, "#rejects .reject-card"):
        seq = card.get_attribute("data-seq")
        if seq not in seen:
            continue
        rows = db_rows(data, f"SELECT t_gate, latency_ms FROM containers WHERE seq = {int(seq)}")
        if rows:  # stored by now (the writer commits within a second)
            decided = datetime.fromisoformat(rows[0][0] + "+00:00").timestamp() * 1000 + rows[0][1]
            delays.append(seen[seq] - decided)
    assert delays and max(delays) < 2000, delays
    (line["tmp"] / "latency.json").write_text(json.dumps(delays))
    print(f"decision to screen: n={len(delays)} p50 {statistics.median(delays):.0f} ms, max {max(delays):.0f} ms")

    # Each camera's last frame, and the line's health from its metrics endpoint: the model the
    # workers loaded, over SSE.
    cameras = d.execute_script("return Object.fromEntries([...document.querySelectorAll('#cameras tr[data-camera]')]"
                               ".map(r => [r.dataset.camera, r.querySelector('.last-frame').textContent]))")
    assert sorted(cameras) == [f"cam-{b}{v}" for b, v in ("l0", "l1", "l2", "r3", "r4", "r5")]
    assert all(t != "-" for t in cameras.values()), cameras
    wait.until(lambda _: d.find_element(By.ID, "loaded-model").text == "scripted-1")
    shot(d, "live")

    # The container page shows the six views with their boxes.
    d.get(d.find_element(By.CSS_SELECTOR, "#rejects .reject-card header a").get_attribute("href"))
    wait.until(ec.presence_of_element_located((By.ID, "container-title")))
    assert len(d.find_elements(By.CSS_SELECTOR, "figure.view")) == 6
    assert d.find_elements(By.CSS_SELECTOR, "rect.box.rejecting")
    vocabulary = Registry(data).get(DEFAULT_MODEL).manifest["vocabulary"]
    for fig in d.find_elements(By.CSS_SELECTOR, "figure.view"):  # storage/draw.py's order and colours
        rects = fig.find_elements(By.CSS_SELECTOR, "rect.box")
        order = [("rejecting" in r.get_attribute("class"), float(r.get_attribute("data-score"))) for r in rects]
        assert order == sorted(order)
        for r in rects:
            b, g, rd = colour(r.get_attribute("data-class"), vocabulary)
            assert r.value_of_css_property("stroke") == f"rgb({rd}, {g}, {b})"
    d.execute_script("document.querySelector('rect.box.rejecting').closest('figure')"
                     ".scrollIntoView({block: 'center'})")
    shot(d, "container")

    # Review: a false reject (keyboard) and a missed defect (a box drawn with the mouse).
    d.get(url + "/review")
    defects = [a for a in d.find_elements(By.CSS_SELECTOR, ".queue a.reject") if a.text.endswith("defect")]
    d.get(defects[0].get_attribute("href"))  # a container the engine rejected
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".review-view")))
    shot(d, "review")
    views = d.find_elements(By.CSS_SELECTOR, ".review-view")
    false_id, missed_id = (int(v.get_attribute("data-view-id")) for v in views[:2])
    views[0].click()
    views[0].send_keys("f")
    wait.until(lambda _: "saved" in views[0].find_element(By.CSS_SELECTOR, ".state").text)
    name = d.find_element(By.ID, "class-name")
    name.clear()
    name.send_keys("bubble")
    svg = views[1].find_element(By.CSS_SELECTOR, "svg")
    ActionChains(d).move_to_element_with_offset(svg, -40, -40).click_and_hold() \
        .move_by_offset(60, 50).release().perform()
    assert views[1].find_elements(By.CSS_SELECTOR, "rect.box.drawn")
    views[1].send_keys("m")
    wait.until(lambda _: "saved" in views[1].find_element(By.CSS_SELECTOR, ".state").text)

    # The model's two boxes on the rejecting view: one moved with the mouse, the other given
    # another class with a number key, then confirmed.
    fig = next(v for v in views if len(json.loads(v.get_attribute("data-boxes"))) == 2)
    fig_id, before = int(fig.get_attribute("data-view-id")), json.loads(fig.get_attribute("data-boxes"))
    scale = d.execute_script("const f = arguments[0]; return f.dataset.width / f.querySelector('svg')"
                             ".getBoundingClientRect().width;", fig)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", fig)
    svg = fig.find_element(By.CSS_SELECTOR, "svg")

    def centre(box):  # a box's centre as selenium's offset from the svg's centre, in CSS pixels
        return (round((box[0] + box[2]) / 2 / scale - svg.size["width"] / 2),
                round((box[1] + box[3]) / 2 / scale - svg.size["height"] / 2))

    ActionChains(d).move_to_element_with_offset(svg, *centre(before[0]["box"])).click_and_hold() \
        .move_by_offset(30, 20).release().perform()
    ActionChains(d).move_to_element_with_offset(svg, *centre(before[1]["box"])).click().perform()
    classes = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#classes option")]
    key = next(i for i, name in enumerate(classes) if name != before[1]["class"])
    fig.send_keys(str(key + 1), "c")
    wait.until(lambda _: "saved" in fig.find_element(By.CSS_SELECTOR, ".state").text)
    shot(d, "review-labelled")
    stored = db_rows(data, f"SELECT class_name, x1, y1, x2, y2 FROM labels WHERE view_id = {fig_id} ORDER BY id")
    assert len(stored) == 2, stored
    moved, renamed = stored
    assert moved[0] == before[0]["class"]
    shift = [m - b for m, b in zip(moved[1:], before[0]["box"])]
    assert abs(shift[0] - 30 * scale) <= 2 and abs(shift[1] - 20 * scale) <= 2 and shift[0] == shift[2], shift
    assert renamed[0] == classes[key] and list(renamed[1:]) == [round(v) for v in before[1]["box"]]
    labelled = db_rows(data, f"SELECT id, labelled FROM views WHERE id IN ({false_id}, {missed_id}) ORDER BY id")
    assert [bool(flag) for _, flag in labelled] == [True, True]
    assert db_rows(data, f"SELECT count(*) FROM labels WHERE view_id = {false_id}") == [(0,)]
    drawn = db_rows(data, f"SELECT class_name, x2 - x1, y2 - y1 FROM labels WHERE view_id = {missed_id} "
                          "AND class_name = 'bubble'")
    assert len(drawn) == 1 and drawn[0][1] > 20 and drawn[0][2] > 20, drawn

    # Statistics and models pages render; an operator cannot activate a model, a POST without
    # the CSRF token is refused.
    d.get(url + "/stats")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".chart svg")))
    shot(d, "stats")
    # A running retrain's progress on the models page, followed as the progress file changes.
    now = time.time()
    running = Progress(state="running", phase="train", step=40, steps=120, started=now - 90, updated=now,
                       eta_s=160, version="rtvp-n-synth-r1", pid=os.getpid(), message="epoch 2 of 6")
    write_progress(data, running)
    d.get(url + "/models")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.models")))
    wait.until(lambda _: d.find_element(By.ID, "retrain-step").text == "40")  # polled every 2 s
    write_progress(data, replace(running, step=80, updated=time.time(), eta_s=80))
    wait.until(lambda _: d.find_element(By.ID, "retrain-step").text == "80")
    shot(d, "models")
    post = """const [path, body, token, done] = arguments;
      const headers = {"Content-Type": "application/x-www-form-urlencoded"};
      if (token) headers["X-CSRF-Token"] = token;
      fetch(path, {method: "POST", headers, body, credentials: "same-origin", redirect: "manual"})
        .then(r => done(r.status));"""
    token = d.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]').get_attribute("content")
    assert d.execute_async_script(post, "/models/activate", "version=rtvp-n-synth", token) == 403
    assert d.execute_async_script(post, "/review/1", "verdict=false+reject", None) == 403

    # Both labels are in `edge samples export` once the line has finished.
    assert line["line"].wait(timeout=120) == 0, (line["tmp"] / "line.log").read_text()[-3000:]
    out = line["tmp"] / "samples"
    result = subprocess.run([sys.executable, "-m", "edge.cli", "samples", "export", "--out", str(out),
                             "--config", str(line["config"])], capture_output=True, text=True, cwd=line["tmp"], env=child_env())
    assert result.returncode == 0, result.stderr
    coco = json.loads((out / "annotations" / "instances_default.json").read_text())  # COCO, CVAT's layout
    files = {Path(i["file_name"]).stem: i["id"] for i in coco["images"]}
    ids = {vid: f"c{cid}_v{view}" for vid, cid, view in
           db_rows(data, f"SELECT id, container_id, view FROM views WHERE id IN ({false_id}, {missed_id}, {fig_id})")}
    boxes = {image_id: [a for a in coco["annotations"] if a["image_id"] == image_id] for image_id in files.values()}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert boxes[files[ids[false_id]]] == []
    assert [names[a["category_id"]] for a in boxes[files[ids[missed_id]]]] == ["bubble"]
    exported = sorted((names[a["category_id"]], [round(v) for v in a["bbox"]]) for a in boxes[files[ids[fig_id]]])
    assert exported == sorted((name, [round(x1), round(y1), round(x2 - x1), round(y2 - y1)])
                              for name, x1, y1, x2, y2 in stored)
