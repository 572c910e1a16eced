"""The operator station at the HTTP level (Starlette's TestClient, no browser, no line):
sign-in, roles, CSRF on every POST, images only from the data folder, review labels in
the database, counters, the `ui:` config checks and `edge users`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient

from edge.cli import main
from edge.config import ConfigError, parse_config
from edge.ui.app import create_app
from edge.ui.health import HealthWatch
from storage.draw import drawing_order
from edge.ui.tally import Tally, shift_start
from edge.ui.users import add_user
from storage import synthetic
from engines.registry import DEFAULT_MODEL, Registry
from engines.training.progress import Progress, write_progress
from storage.db import Label, View, open_database
from storage.draw import Mark, colour, draw
from storage.writer import Recorder
from line_support import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse"


def config_for(tmp: Path, **ui):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"]["data_dir"] = str(tmp / "data")
    raw["ui"] = ui
    return parse_config(raw, tmp / "config.yaml")


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    """A data folder with 10 recorded containers (2 rejected, images kept), two users, one model."""
    tmp = tmp_path_factory.mktemp("ui")
    config = config_for(tmp)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    recorder = Recorder(config.database_url, config.data_dir, config.storage, line_id="line-1")
    for seq in range(1, 11):
        recorder.record(synthetic.container(seq, t_gate=now + timedelta(seconds=seq)), images=synthetic.images(seq))
    recorder.close()
    db = open_database(config.database_url)
    add_user(db, "olga", "operator", PASSWORD)
    add_user(db, "erik", "engineer", PASSWORD)
    db.close()
    from engines.registry import Registry

    Registry(config.data_dir).ensure_default()
    return config


@pytest.fixture(scope="module")
def app(station):
    return create_app(station, secret="test secret")


def csrf_of(client: TestClient, path: str = "/login") -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)[1]


def signed_in(app, name: str) -> TestClient:
    client = TestClient(app)
    response = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf_of(client)},
                           follow_redirects=False)
    assert response.status_code == 303
    return client


def test_pages_need_a_sign_in(app):
    with TestClient(app) as client:
        for path in ("/", "/review", "/stats", "/models", "/container/1"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code in (302, 303, 307) and "/login" in response.headers["location"], path
        assert client.get("/thumb/1.jpg").status_code == 403


def test_wrong_password_and_unknown_name_are_refused(app):
    client = TestClient(app)
    token = csrf_of(client)
    for name, password in (("olga", "wrong password"), ("nobody", PASSWORD)):
        response = client.post("/login", data={"name": name, "password": password, "csrf": token})
        assert response.status_code == 401 and "Wrong name or password" in response.text
    assert client.get("/", follow_redirects=False).status_code != 200


def test_every_post_needs_the_csrf_token(app):
    client = signed_in(app, "erik")
    posts = [r for r in app.routes if "POST" in (getattr(r, "methods", None) or ())]
    assert posts and all(getattr(r.endpoint, "csrf_protected", False) or
                         getattr(getattr(r.endpoint, "__wrapped__", None), "csrf_protected", False) for r in posts)
    assert client.post("/models/rollback").status_code == 403
    assert client.post("/models/activate", data={"version": "x", "csrf": "forged"}).status_code == 403
    assert client.post("/review/1", json={"verdict": "false reject"}).status_code == 403
    assert TestClient(app).post("/login", data={"name": "erik", "password": PASSWORD}).status_code == 403


def test_operator_cannot_change_models_engineer_can(app, station):
    operator = signed_in(app, "olga")
    token = csrf_of(operator, "/models")
    response = operator.post("/models/rollback", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 403
    engineer = signed_in(app, "erik")
    token = csrf_of(engineer, "/models")
    response = engineer.post("/models/rollback", data={"csrf": token})
    assert response.status_code == 200 and "nothing to roll back to" in response.text


def test_images_only_from_inside_the_data_folder(app, station):
    client = signed_in(app, "olga")
    db = open_database(station.database_url)
    with db.session() as s:
        stored = s.scalar(select(View).where(View.image_state == "stored"))
    db.close()
    assert client.get(f"/image/{stored.image_file}").status_code == 200
    (station.data_dir.parent / "secret.jpg").write_bytes(b"not for you")
    for path in ("../secret.jpg", "..%2Fsecret.jpg", "images/../../secret.jpg", "/etc/passwd", "edge.db",
                 "ui/session.key"):
        assert client.get(f"/image/{path}").status_code == 404, path


def test_pages_render(app, station):
    client = signed_in(app, "erik")
    assert "inspected" in client.get("/").text
    page = client.get("/container/5").text
    assert page.count('class="view"') == 6 and "reject" in page
    assert client.get("/stats").text.count("<svg") == 5
    assert DEFAULT_MODEL in client.get("/models").text
    assert client.get("/thumb/line-1/5/0.jpg").headers["content-type"] == "image/jpeg"


def test_review_verdicts_are_labels(app, station):
    client = signed_in(app, "olga")
    page = client.get("/review").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    view_ids = [int(v) for v in re.findall(r'data-view-id="(\d+)"', page)]
    assert len(view_ids) == 6
    headers = {"X-CSRF-Token": token}
    assert client.post(f"/review/{view_ids[0]}", json={"verdict": "false reject"}, headers=headers).json() == {"saved": 0}
    missed = {"verdict": "missed defect", "boxes": [{"class": "crack", "box": [10, 20, 60, 90]}]}
    assert client.post(f"/review/{view_ids[1]}", json=missed, headers=headers).json() == {"saved": 1}
    bad = client.post(f"/review/{view_ids[2]}", json={"verdict": "missed defect", "boxes": []}, headers=headers)
    assert bad.status_code == 400 and "at least one box" in bad.json()["error"]
    db = open_database(station.database_url)
    with db.session() as s:
        labels = s.scalars(select(Label).where(Label.view_id.in_(view_ids[:2]))).all()
        labelled = [s.get(View, v).labelled for v in view_ids[:2]]
    db.close()
    assert [(lb.view_id, lb.class_name, lb.box) for lb in labels] == [(view_ids[1], "crack", [10, 20, 60, 90])]
    assert labelled == [True, True] and labels[0].source == "ui:olga:missed defect"


def test_counters_count_each_decision_once(station):
    db = open_database(station.database_url)
    now = datetime.now(timezone.utc)
    tally = Tally(["06:00", "14:00", "22:00"], now, station.data_dir, "line-1", {}, 0.5)
    tally.refresh(db, now)
    before = tally.snapshot(now)[2]
    old = {"seq": 1, "line_id": "line-1", "t_gate_utc": (now - timedelta(minutes=5)).isoformat(),
           "decision": "reject", "reason": "defect", "views": []}
    new = dict(old, seq=99, t_gate_utc=now.isoformat(), reason="late result")
    assert not tally.add(old) and tally.add(new)  # the database already counts the old one
    _, _, hour = tally.snapshot(now + timedelta(seconds=1))
    db.close()
    assert before.inspected == 10 and before.rejected == 2
    assert (hour.inspected, hour.rejected, hour.late) == (11, 3, 1)


def test_shift_start_is_the_latest_local_start():
    local = datetime(2026, 11, 26, 5, 30).astimezone()
    assert shift_start(local, ["06:00", "14:00", "22:00"]).strftime("%d %H:%M") == "25 22:00"
    assert shift_start(local.replace(hour=14), ["06:00", "14:00", "22:00"]).strftime("%H:%M") == "14:00"


def test_binding_off_loopback_needs_tls(tmp_path):
    with pytest.raises(ConfigError, match="not loopback"):
        config_for(tmp_path, address="0.0.0.0")
    with pytest.raises(ConfigError, match="HH:MM"):
        config_for(tmp_path, shift_starts=["6am"])
    assert config_for(tmp_path, address="0.0.0.0", tls_cert="c.pem", tls_key="k.pem").ui.tls


def test_users_add_from_stdin(tmp_path):
    config = tmp_path / "config.yaml"
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"]["data_dir"] = str(tmp_path / "data")
    config.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    result = runner.invoke(main, ["users", "add", "ana", "--role", "engineer", "--config", str(config)],
                           input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "ana" in runner.invoke(main, ["users", "list", "--config", str(config)]).output
    short = runner.invoke(main, ["users", "add", "bo", "--role", "operator", "--config", str(config)], input="short\n")
    assert short.exit_code == 2 and "8 characters" in short.output


def test_cameras_show_last_frame_missing_views_and_grab_timeouts(tmp_path):
    """Grab timeouts and last frames per camera, from the database (before the station started)
    and from the decision stream (after), each counted once."""
    config = config_for(tmp_path)
    now = datetime.now(timezone.utc)
    recorder = Recorder(config.database_url, config.data_dir, config.storage, line_id="line-1")
    record = synthetic.container(1, t_gate=now - timedelta(minutes=10))
    record.views[2] = replace(record.views[2], t_capture=None, detections=[],
                              missing="missing: timeout: no image within 500 ms")
    record.views[3] = replace(record.views[3], t_capture=None, detections=[], missing="missing: camera lost")
    recorder.record(record, images={})
    recorder.close()
    db = open_database(config.database_url)
    tally = Tally(["06:00", "14:00", "22:00"], now, config.data_dir, "line-1", {}, 0.5, ["cam-0", "cam-2", "cam-9"])
    tally.refresh(db, now)
    db.close()
    streamed = {"seq": 2, "line_id": "line-1", "t_gate_utc": now.isoformat(), "decision": "reject",
                "reason": "missing view", "views": [
                    {"view": 2, "camera_id": "cam-2", "outcome": "missing", "reason": "timeout: no image within 500 ms"},
                    {"view": 0, "camera_id": "cam-0", "outcome": "inferred", "t_capture_utc": now.isoformat()}]}
    assert tally.add(streamed)
    _, shift, hour = tally.snapshot(now + timedelta(seconds=1))
    rows = {r.camera: r for r in tally.camera_rows(shift, hour)}
    assert list(rows)[:3] == ["cam-0", "cam-2", "cam-9"]  # configured first, then those the records name
    assert rows["cam-0"].last_frame == now and rows["cam-9"].last_frame is None
    assert rows["cam-1"].last_frame == record.views[1].t_capture
    assert (rows["cam-2"].missing_hour, rows["cam-2"].timeouts_hour) == (2, 2)
    assert (rows["cam-3"].missing_hour, rows["cam-3"].timeouts_hour) == (1, 0)  # lost, not a timeout
    assert (rows["cam-0"].missing_hour, rows["cam-0"].timeouts_hour) == (0, 0)


def _endpoint(registry) -> str:
    from prometheus_client import start_http_server

    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return f"127.0.0.1:{port}", server


def test_line_health_from_the_metrics_endpoint():
    """A real endpoint: the loaded model, queue depths; dropped frames and a growing backlog warn."""
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry()
    frames = Counter("edge_frames", "", ["stage", "outcome", "reason"], registry=registry)
    depth = Gauge("edge_queue_depth", "", ["stage"], registry=registry)
    Gauge("edge_model_info", "", ["version"], registry=registry).labels("rtvp-7").set(1)
    address, server = _endpoint(registry)
    watch = HealthWatch(address, workers=2)
    try:
        frames.labels("worker", "inferred", "").inc(60)
        depth.labels("writer").set(3)
        calm = [watch.poll(t) for t in (0.0, 5.0, 10.0)][-1]
        assert calm.answering and calm.models == ["rtvp-7"] and calm.warnings == []
        assert calm.queues == {"writer": 3.0} and calm.views_s == 0.0
        for t, n in ((15.0, 8), (20.0, 14)):
            frames.labels("station", "dropped", "queue full").inc(2)
            frames.labels("worker", "inferred", "").inc(100)
            depth.labels("writer").set(n)
            busy = watch.poll(t)
        assert busy.views_s == 10.0
        assert any(w.startswith("frames dropped at the station") and ": 4 in" in w for w in busy.warnings), busy.warnings
        assert any(w.startswith("backlog at writer: 3 -> 14") for w in busy.warnings), busy.warnings
        later = [watch.poll(t) for t in (90.0, 95.0)][-1]  # a minute on, nothing rose: no warning
        assert later.warnings == [], later.warnings
    finally:
        server.shutdown()
    gone = watch.poll(100.0)
    assert not gone.answering and address in gone.error


def test_live_page_shows_cameras_and_health(app):
    client = signed_in(app, "olga")
    page = client.get("/").text
    assert 'id="cameras"' in page and 'data-camera="cam-l0"' in page
    assert 'id="health"' in page and "Line metrics" in page  # no line runs: says so


def test_container_overlay_follows_storage_draw(app):
    """The SVG paints boxes in storage/draw.py's order (weak first, then by score, highest last)
    in its class colours."""
    client = signed_in(app, "olga")
    page = client.get("/container/5").text
    figures = page.split('class="view"')[1:]
    assert len(figures) == 6
    vocabulary = list(Registry(app.state.station.data_dir).get(DEFAULT_MODEL).manifest["vocabulary"])
    for fig in figures:
        rects = re.findall(r'class="box (rejecting|below)" data-class="([^"]+)" data-score="([^"]+)" '
                           r'style="stroke: rgb\((\d+), (\d+), (\d+)\)"', fig)
        assert len(rects) == 3
        order = [(kind == "rejecting", float(score)) for kind, _, score, *_ in rects]
        assert order == sorted(order)
        for _, name, _, r, g, b in rects:
            assert (int(b), int(g), int(r)) == colour(name, vocabulary)


@pytest.mark.parametrize("weak_a,score_a,weak_b,score_b", [
    (False, 0.9, False, 0.6), (False, 0.6, False, 0.9), (True, 0.9, False, 0.6), (False, 0.6, True, 0.9)])
def test_drawing_order_is_storage_draws(weak_a, score_a, weak_b, score_b):
    """Where two box outlines cross, draw() leaves the colour of the mark it painted last:
    the one drawing_order puts last."""
    a = Mark([100, 100, 200, 200], "oil", score_a, weak=weak_a)
    b = Mark([150, 150, 250, 250], "bubble", score_b, weak=weak_b)
    vocabulary = ["oil", "bubble"]
    picture = draw(np.zeros((400, 400, 3), np.uint8), [a, b], vocabulary)
    on_top = drawing_order([a, b])[-1]
    assert tuple(int(v) for v in picture[150, 200]) == colour(on_top.name, vocabulary)
    assert tuple(int(v) for v in picture[200, 150]) == colour(on_top.name, vocabulary)


def test_models_page_shows_retrain_progress(app, station):
    client = signed_in(app, "olga")
    assert "No retrain has run" in client.get("/models/progress").text
    now = time.time()
    write_progress(station.data_dir, Progress(state="running", phase="train", step=30, steps=120, started=now - 60,
                                              updated=now, eta_s=180, version="rtvp-n-synth-r1", pid=os.getpid()))
    page = client.get("/models").text
    assert 'hx-get="http://testserver/models/progress"' in page and 'data-state="running"' in page
    fragment = client.get("/models/progress").text
    assert 'id="retrain-step">30<' in fragment and "(25 %)" in fragment and "3.0 min left" in fragment
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_progress(station.data_dir, Progress(state="running", phase="train", step=31, steps=120, started=now,
                                              updated=now, pid=int(dead.stdout)))
    fragment = client.get("/models/progress").text
    assert 'data-state="failed"' in fragment and "is gone" in fragment
    (station.data_dir / "retrain" / "progress.json").unlink()
