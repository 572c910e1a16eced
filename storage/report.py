"""The shift report (`edge report`): one self-contained HTML file for the quality meeting.

Everything is inside the file: charts as inline SVG (storage/report_charts.py), example
images as data URIs, and the counts as the JSON `edge db stats --json` prints for the
same window (embedded, so a reader or a test can check they agree). Images are read
only from the data folder (storage.files.inside): a row naming a file elsewhere is
skipped.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
from jinja2 import Environment
from sqlalchemy import func, select

from storage.db import STORED, Container, Database, Detection, Event, ModelVersion, View
from storage.draw import Mark, draw
from storage.files import OutsideRoot, inside, read_image
from storage.spc import Alarm, SpcMonitor
from storage.spc_history import seeded_monitor, stored_samples
from storage.stats import Group, Stats, breakdown, line_stats, stats_json

WORST_CAVITIES = 3
IMAGES_PER_CAVITY = 3
THUMB_WIDTH = 220
SPC_EVENT = "spc alarm"


@dataclass
class Example:
    mould: str
    seq: int
    camera_id: str
    data_uri: str


@dataclass
class Report:
    since: datetime
    until: datetime
    line_id: str
    stats: Stats
    cavities: list[Group]
    charts: SpcMonitor
    alarms: list[Alarm]  # recomputed over the window with the live baseline rule
    alarm_events: list[tuple[datetime, str]]  # what the line raised (events table)
    examples: list[Example] = field(default_factory=list)
    views_by_camera: dict[str, int] = field(default_factory=dict)
    model_versions: list[str] = field(default_factory=list)


def build_report(db: Database, data_dir: Path, config, since: datetime, until: datetime) -> Report:
    """Gather the window's figures (config: the whole AppConfig; this line only)."""
    line_id, thresholds, default = config.line.id, dict(config.engine.thresholds), config.engine.default_threshold
    stats = line_stats(db, since, until, thresholds, default, line_id)
    cavities = [g for g in breakdown(db, ["cavity"], since, until, thresholds, default, line_id) if g.key["cavity"] != "-"]
    monitor = seeded_monitor(db, config.spc, since, line_id, thresholds, default)
    alarms = []
    for s in stored_samples(db, since, until, line_id, thresholds, default):
        alarms += monitor.add(s)
    report = Report(since, until, line_id, stats, cavities, monitor, alarms, _alarm_events(db, since, until, line_id))
    worst = sorted((g for g in cavities if g.by_reason.get("defect")),
                   key=lambda g: -g.by_reason["defect"] / g.containers)[:WORST_CAVITIES]
    report.examples = [e for g in worst for e in _examples(db, data_dir, g.key["cavity"], since, until, line_id)]
    with db.session() as s:
        window = (Container.line_id == line_id, Container.t_gate >= since, Container.t_gate < until)
        report.views_by_camera = dict(s.execute(
            select(View.camera_id, func.count()).join(Container, View.container_id == Container.id)
            .where(*window).group_by(View.camera_id).order_by(View.camera_id)).all())
        report.model_versions = list(s.scalars(
            select(ModelVersion.version).distinct().join(Container, Container.model_version_id == ModelVersion.id)
            .where(*window).order_by(ModelVersion.version)))
    return report


def _alarm_events(db: Database, since: datetime, until: datetime, line_id: str) -> list[tuple[datetime, str]]:
    with db.session() as s:
        return [tuple(row) for row in s.execute(
            select(Event.t, Event.detail).where(Event.kind == SPC_EVENT, Event.line_id == line_id,
                                                Event.t >= since, Event.t < until).order_by(Event.t))]


def _examples(db: Database, data_dir: Path, mould: str, since: datetime, until: datetime,
              line_id: str) -> list[Example]:
    """Stored views of the mould's defect rejects that show a detection, boxes drawn."""
    section, cavity = (int(x) for x in mould.split("-"))
    with db.session() as s:
        rows = s.execute(
            select(View.id, Container.seq, View.camera_id, View.image_file)
            .join(Container, View.container_id == Container.id)
            .where(Container.line_id == line_id, Container.section == section, Container.cavity == cavity,
                   Container.reason == "defect", Container.t_gate >= since, Container.t_gate < until,
                   View.image_state == STORED, View.id.in_(select(Detection.view_id)))
            .order_by(Container.t_gate.desc()).limit(IMAGES_PER_CAVITY)).all()
        boxes = {view_id: [Mark(d.box, d.class_name, d.score) for d in
                           s.scalars(select(Detection).where(Detection.view_id == view_id))]
                 for view_id, *_ in rows}
    out = []
    for view_id, seq, camera_id, image_file in rows:
        try:
            image = read_image(inside(data_dir, image_file))
        except OutsideRoot:
            continue
        if image is None:
            continue
        scale = THUMB_WIDTH / image.shape[1]
        thumb = cv2.resize(image, (THUMB_WIDTH, int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        thumb = draw(thumb, boxes[view_id], scale=scale)
        ok, jpeg = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            out.append(Example(mould, seq, camera_id,
                               "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()))
    return out


def render_html(report: Report) -> str:
    from storage import report_charts

    s = report.stats
    cavity_charts = sorted((c for c in report.charts.charts.values() if c.name.startswith("cavity")),
                           key=lambda c: tuple(int(x) for x in c.name.split()[1].split("-")))
    class_charts = sorted((c for c in report.charts.charts.values() if c.name.startswith("class")),
                          key=lambda c: c.name)
    missing = {cam: (s.missing_by_camera.get(cam, 0), n) for cam, n in report.views_by_camera.items()}
    return TEMPLATE.render(
        r=report, s=s, counts=json.dumps(stats_json(s)).replace("</", "<\\/"),  # inside <script>
        yield_svg=report_charts.yield_over_time(s.by_hour) if s.by_hour else "",
        pareto_svg=report_charts.pareto(s.by_class) if s.by_class else "",
        cavity_svg=report_charts.control_charts(cavity_charts) if cavity_charts else "",
        class_svg=report_charts.control_charts(class_charts) if class_charts else "",
        missing=missing, baseline_ready=report.charts.ready, baseline_n=report.charts.baseline_n,
        centre=report.charts.centre)


def write_report(db: Database, data_dir: Path, config, since: datetime, until: datetime, out: Path) -> Report:
    report = build_report(db, data_dir, config, since, until)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report))
    return report


TEMPLATE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Shift report {{ r.line_id }} {{ r.since.strftime("%Y-%m-%d %H:%M") }}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
.big span { font-size: 1.8em; font-weight: bold; margin-right: .2em; } .big div { display: inline-block; margin-right: 2em; }
.alarm { color: #c0392b; font-weight: bold; } .examples figure { display: inline-block; margin: 4px; font-size: .8em; }
</style></head><body>
<h1>Shift report — {{ r.line_id }}</h1>
<p>{{ r.since.strftime("%Y-%m-%d %H:%M") }} to {{ r.until.strftime("%Y-%m-%d %H:%M") }} UTC ·
model {{ r.model_versions|join(", ") or "-" }}</p>
<div class="big" id="totals">
  <div><span id="containers">{{ s.containers }}</span>inspected</div>
  <div><span id="passed">{{ s.passed }}</span>passed</div>
  <div><span id="rejected">{{ s.rejected }}</span>rejected</div>
  <div><span>{{ "%.2f"|format(100 * s.yield_) }} %</span>yield</div>
</div>
<table id="reasons"><tr><th>reject reason</th><th>containers</th><th>share</th></tr>
{% for reason, n in s.by_reason.items() %}<tr><td>{{ reason }}</td><td>{{ n }}</td><td>{{ "%.2f"|format(100 * s.rate(n)) }} %</td></tr>{% endfor %}
</table>

<h2>Yield over time</h2>
{{ yield_svg|safe if yield_svg else "no containers in this window" }}

<h2>Defects (Pareto)</h2>
{{ pareto_svg|safe if pareto_svg else "no defect rejects" }}

<h2>Cavities</h2>
<table id="cavities"><tr><th>mould</th><th>containers</th><th>rejected</th><th>defect</th><th>mould reject</th><th>reject rate</th></tr>
{% for g in r.cavities %}<tr><td>{{ g.key.cavity }}</td><td>{{ g.containers }}</td><td>{{ g.rejected }}</td>
<td>{{ g.by_reason.get("defect", 0) }}</td><td>{{ g.by_reason.get("mould", 0) }}</td><td>{{ "%.2f"|format(100 * g.rate) }} %</td></tr>
{% else %}<tr><td colspan="6">no container carries a mould number</td></tr>{% endfor %}
</table>

<h2>Control charts per cavity</h2>
<p>p-charts: share of each cavity's subgroup of {{ r.charts.subgroup }} containers rejected for a defect;
centre line {{ "%.2f"|format(100 * centre) }} % (the machine, baseline of {{ baseline_n }} containers{{ "" if baseline_ready else ", still incomplete: no points yet" }}),
dashed: upper control limit. Red: out of control.</p>
{{ cavity_svg|safe }}
<h2>Control charts per defect class</h2>
{{ class_svg|safe if class_svg else "no class chart points in this window" }}
<h2>Alarms</h2>
<table id="alarms"><tr><th>raised on the line</th><th></th></tr>
{% for t, detail in r.alarm_events %}<tr><td>{{ t.strftime("%H:%M:%S") }}</td><td class="alarm">{{ detail }}</td></tr>
{% else %}<tr><td colspan="2">none</td></tr>{% endfor %}
<tr><th>on the charts above</th><th></th></tr>
{% for a in r.alarms %}<tr><td>{{ a.chart }} point {{ a.point }}</td><td class="alarm">{{ a.message() }}</td></tr>
{% else %}<tr><td colspan="2">none</td></tr>{% endfor %}
</table>

<h2>Worst cavities: examples</h2>
<div class="examples">
{% for e in r.examples %}<figure><img src="{{ e.data_uri }}" alt="container {{ e.seq }}"><figcaption>{{ e.mould }} · #{{ e.seq }} · {{ e.camera_id }}</figcaption></figure>
{% else %}no stored images of defect rejects{% endfor %}
</div>

<h2>Camera health</h2>
<table id="cameras"><tr><th>camera</th><th>views</th><th>missing</th><th>share</th></tr>
{% for cam, (miss, n) in missing.items() %}<tr><td>{{ cam }}</td><td>{{ n }}</td><td class="{{ 'alarm' if miss else '' }}">{{ miss }}</td><td>{{ "%.2f"|format(100 * miss / n) if n else 0 }} %</td></tr>{% endfor %}
</table>
<script type="application/json" id="counts">{{ counts|safe }}</script>
</body></html>
""")
