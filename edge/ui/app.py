"""The operator station's web application: pages, their routes, and who may use them.

    /            Live: counters for the shift and the last hour, cameras, line health, the last rejects (SSE)
    /container/N Container: six views with boxes, class, score, threshold, decision
    /review      Review: rejected and sampled containers, a verdict per view -> labels
    /stats       Statistics: yield and rejects per hour, class, camera (SVG)
    /models      Models: registry versions, a running retrain's progress, activate / roll back (engineers only)

Everything is server-rendered (Jinja2) with htmx for the few live or partial updates;
every POST carries the session's CSRF token (security.py). Database reads run in
Starlette's thread pool, in short sessions, so the event loop only serves pages and
the decision stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from edge.ui import charts, images, queries
from edge.ui.feed import DecisionFeed
from edge.ui.health import HealthWatch
from edge.ui.models import active_facts, figures
from edge.ui.review import VERDICTS, save_verdict
from edge.ui.security import CSRF_HEADER, SessionUsers, csrf_protected, csrf_token, session_secret, sign_in
from edge.ui.tally import Tally
from edge.ui.users import authenticate
from engines.errors import EngineError
from storage.db import STORED, open_database
from storage.draw import Mark, drawing_order
from storage.errors import StorageError
from engines.registry import Registry
from engines.training.progress import read_progress
from storage.stats import line_stats

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
TALLY_REFRESH_S = 30.0  # the database part of the counters (before T0, and the sliding hour)
COUNTERS_EVERY_S = 0.5  # counters re-sent to a browser at most this often
HEALTH_EVERY_S = 2.0  # the line's metrics endpoint scraped, and the health panel re-sent, this often
THUMB_WAIT_S = 5.0  # a reject is on screen before the writer has committed its images


class Station:
    """What the pages share: config, database, registry, the live feed and counters."""

    def __init__(self, config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.db = open_database(config.database_url)
        self.registry = Registry(self.data_dir)
        self.tally = Tally(config.ui.shift_starts, datetime.now(timezone.utc), self.data_dir, config.line.id,
                           dict(config.engine.thresholds), config.engine.default_threshold,
                           [c.id for c in config.cameras])
        self.health = HealthWatch(config.metrics.address, config.pipeline.workers)
        self.feed = DecisionFeed(config.pipeline, self.data_dir, self.tally, config.ui.recent_rejects)
        self.facts = active_facts(self.registry, config.engine)

    def model_facts(self):
        """Re-read only when the active version changed (an engineer or `edge retrain` switched it)."""
        if self.registry.active_version() != self.facts.version:
            self.facts = active_facts(self.registry, self.config.engine)
        return self.facts

    async def keep_counting(self) -> None:
        while True:
            try:
                await run_in_threadpool(self.tally.refresh, self.db, datetime.now(timezone.utc))
            except Exception:  # a database hiccup must not stop the live page; try again later
                log.exception("counters: reading the database failed")
            await asyncio.sleep(TALLY_REFRESH_S)

    async def keep_watching(self) -> None:
        while True:
            try:
                await run_in_threadpool(self.health.poll, time.monotonic())
            except Exception:  # an odd answer must not stop the live page; try again later
                log.exception("line health: reading the metrics endpoint failed")
            await asyncio.sleep(HEALTH_EVERY_S)


templates = Jinja2Templates(directory=str(HERE / "templates"))


def page(request: Request, name: str, status_code: int = 200, **context) -> Response:
    station: Station = request.app.state.station
    context.update(csrf=csrf_token(request), csrf_header=CSRF_HEADER, line_id=station.config.line.id,
                   user=request.user.display_name if request.user.is_authenticated else None,
                   engineer="engineer" in request.auth.scopes if request.user.is_authenticated else False)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def local(t: datetime | str | float | None) -> str:
    """A time (aware datetime, ISO text, or time.time() seconds) as the line's local HH:MM:SS."""
    if t is None:
        return "-"
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    elif isinstance(t, (int, float)):
        t = datetime.fromtimestamp(t, timezone.utc)
    return t.astimezone().strftime("%H:%M:%S")


templates.env.filters["local"] = local


# -- sign-in -------------------------------------------------------------------------------
async def login(request: Request) -> Response:
    return page(request, "login.html", error=None)


@csrf_protected
async def login_post(request: Request) -> Response:
    form = await request.form()
    station: Station = request.app.state.station
    user = await run_in_threadpool(authenticate, station.db, str(form.get("name", "")),
                                   str(form.get("password", "")))
    if user is None:
        return page(request, "login.html", status_code=401, error="Wrong name or password.")
    sign_in(request, user.name, user.role)
    log.info("%s (%s) signed in", user.name, user.role)
    return RedirectResponse(request.url_for("live"), status_code=303)


@csrf_protected
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse(request.url_for("login"), status_code=303)


# -- live ----------------------------------------------------------------------------------
def counters_context(station: Station) -> dict:
    shift, shift_counts, hour_counts = station.tally.snapshot(datetime.now(timezone.utc))
    return {"shift_start": shift, "shift": shift_counts, "hour": hour_counts,
            "cameras": station.tally.camera_rows(shift_counts, hour_counts),
            "model_version": station.feed.model_version or station.registry.active_version(),
            "last_decision": station.feed.last_decision, "spc_alarms": station.tally.spc_alarms}


@requires("authenticated", redirect="login")
async def live(request: Request) -> Response:
    station: Station = request.app.state.station
    return page(request, "live.html", rejects=list(reversed(station.feed.recent)), health=station.health.current,
                **counters_context(station))


@requires("authenticated", redirect="login")
async def events(request: Request) -> Response:
    """Server-sent events: a `reject` card per rejected container, `counters` at most twice a second,
    `health` every HEALTH_EVERY_S (also when no decision comes: a stopped line is news)."""
    station: Station = request.app.state.station
    queue = station.feed.subscribe()

    def render(name: str, **context) -> str:
        return templates.get_template(name).render(request=request, **context)

    async def stream():
        last_counters = last_health = 0.0
        try:
            while True:
                if time.monotonic() - last_health >= HEALTH_EVERY_S:
                    last_health = time.monotonic()
                    yield {"event": "health", "data": render("_health.html", health=station.health.current)}
                try:
                    decision = await asyncio.wait_for(queue.get(), timeout=COUNTERS_EVERY_S)
                except asyncio.TimeoutError:
                    decision = None
                if decision is not None and decision["decision"] == "reject":
                    yield {"event": "reject", "data": render("_reject_card.html", d=decision)}
                if decision is not None and time.monotonic() - last_counters >= COUNTERS_EVERY_S:
                    last_counters = time.monotonic()
                    yield {"event": "counters", "data": render("_counters.html", **counters_context(station))}
        finally:
            station.feed.unsubscribe(queue)

    return EventSourceResponse(stream(), ping=15)


# -- container -----------------------------------------------------------------------------
def view_boxes(v, thresholds) -> list[dict]:
    return [{"class": d.class_name, "score": d.score, "threshold": thresholds.of(d.class_name),
             "rejecting": d.score >= thresholds.of(d.class_name), "box": d.box}
            for d in sorted(v.detections, key=lambda d: -d.score)]


def marks(boxes: list[dict]) -> list[Mark]:
    return [Mark(b["box"], b["class"], b["score"], weak=not b["rejecting"]) for b in boxes]


def overlay(boxes: list[dict], vocabulary) -> list[dict]:
    """A view's boxes for the SVG: in storage/draw.py's order (highest score last, on top), its colours."""
    return [{"class": m.name, "score": m.score, "box": m.box, "weak": m.weak, "text": m.text,
             "colour": images.css_colour(m.name, vocabulary)} for m in drawing_order(marks(boxes))]


@requires("authenticated", redirect="login")
def container_page(request: Request) -> Response:
    station: Station = request.app.state.station
    c = queries.container(station.db, request.path_params["container_id"])
    if c is None:
        return page(request, "missing.html", status_code=404, what=f"container {request.path_params['container_id']}")
    facts = station.model_facts()
    thresholds, vocabulary = facts.thresholds, facts.vocabulary
    views = []
    for v in c.views:
        path = images.inside(station.data_dir, v.image_file) if v.image_state == STORED and v.image_file else None
        boxes = view_boxes(v, thresholds)
        views.append({"row": v, "boxes": boxes, "overlay": overlay(boxes, vocabulary), "path": path,
                      "size": images.image_size(path) if path else None})
    return page(request, "container.html", c=c, views=views, colour=lambda name: images.css_colour(name, vocabulary))


@requires("authenticated", redirect="login")
def container_by_seq(request: Request) -> Response:
    station: Station = request.app.state.station
    found = queries.container_id_by_seq(station.db, request.path_params["line"], request.path_params["seq"])
    if found is None:
        return page(request, "missing.html", status_code=404, what=f"container {request.path_params['seq']} "
                    "(not stored yet, or not on this line)")
    return RedirectResponse(request.url_for("container", container_id=found), status_code=303)


# -- images --------------------------------------------------------------------------------
@requires("authenticated")
def image(request: Request) -> Response:
    """A stored view, full resolution: only files inside the data folder."""
    station: Station = request.app.state.station
    path = images.inside(station.data_dir, request.path_params["path"])
    if path is None or path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return Response("no such image", status_code=404)
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


def _thumb(station: Station, v) -> Response:
    path = images.inside(station.data_dir, v.image_file) if v.image_state == STORED and v.image_file else None
    facts = station.model_facts()
    jpeg = images.thumbnail(path, marks(view_boxes(v, facts.thresholds)), facts.vocabulary) if path else None
    if jpeg is None:
        jpeg = images.placeholder(v.missing or f"image {v.image_state}")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})


@requires("authenticated")
def thumb_by_seq(request: Request) -> Response:
    """A reject card's thumbnail: the card is on screen before the writer commits, so wait a little."""
    station: Station = request.app.state.station
    p = request.path_params
    end = time.monotonic() + THUMB_WAIT_S
    while True:
        found = queries.container_id_by_seq(station.db, p["line"], p["seq"])
        c = queries.container(station.db, found) if found is not None else None
        view = next((v for v in c.views if v.view == p["view"]), None) if c else None
        if view is not None or time.monotonic() > end:
            break
        time.sleep(0.2)
    if view is None:
        return Response(images.placeholder("not stored yet"), media_type="image/jpeg")
    return _thumb(station, view)


@requires("authenticated")
def thumb(request: Request) -> Response:
    station: Station = request.app.state.station
    v = queries.view(station.db, request.path_params["view_id"])
    return _thumb(station, v) if v else Response("no such view", status_code=404)


# -- review --------------------------------------------------------------------------------
@requires("operator", redirect="login")
def review(request: Request) -> Response:
    station: Station = request.app.state.station
    queue = queries.review_queue(station.db)
    chosen = request.query_params.get("container")
    target = int(chosen) if chosen and chosen.isdigit() else (queue[0].id if queue else None)
    c = queries.container(station.db, target) if target is not None else None
    facts = station.model_facts()
    views = []
    for v in (c.views if c else []):
        path = images.inside(station.data_dir, v.image_file) if v.image_state == STORED and v.image_file else None
        if path is None:
            continue
        boxes = ([{"class": lb.class_name, "box": lb.box, "rejecting": True, "score": None} for lb in v.labels]
                 if v.labelled else [b for b in view_boxes(v, facts.thresholds) if b["rejecting"]])
        views.append({"row": v, "boxes": boxes, "size": images.image_size(path)})
    names = set(facts.vocabulary) | {b["class"] for v in views for b in v["boxes"]}
    return page(request, "review.html", queue=queue, c=c, views=views, verdicts=VERDICTS,
                classes=facts.vocabulary, colours={n: images.css_colour(n, facts.vocabulary) for n in names})


@requires("operator")
@csrf_protected
async def review_post(request: Request) -> Response:
    """One view's verdict, as JSON {verdict, boxes: [{class, box}]} from review.js."""
    station: Station = request.app.state.station
    try:
        body = await request.json()
        n = await run_in_threadpool(
            save_verdict, station.db, station.data_dir, station.config.storage, request.path_params["view_id"],
            str(body.get("verdict")), list(body.get("boxes") or []), station.model_facts().vocabulary,
            request.user.display_name)
    except (StorageError, ValueError, AttributeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    log.info("%s: view %d %s, %d boxes", request.user.display_name, request.path_params["view_id"],
             body["verdict"], n)
    return JSONResponse({"saved": n})


# -- statistics ----------------------------------------------------------------------------
@requires("authenticated", redirect="login")
def stats(request: Request) -> Response:
    station: Station = request.app.state.station
    hours = request.query_params.get("hours", "24")
    hours_n = int(hours) if hours.isdigit() and 0 < int(hours) <= 24 * 31 else 24
    facts = station.model_facts()
    s = line_stats(station.db, since=datetime.now(timezone.utc) - timedelta(hours=hours_n),
                   thresholds=facts.thresholds.by_class, default_threshold=facts.thresholds.default,
                   line_id=station.config.line.id)
    per_hour = [(f"{_local_hour(h)}", float(n), float(r)) for h, (n, r) in s.by_hour.items()]
    yield_hour = [(label, round(100.0 * (n - r) / n, 1) if n else 0.0, 0.0) for label, n, r in per_hour]
    shown = [charts.bars("Containers per hour (red: rejected)", per_hour),
             charts.bars("Yield per hour", yield_hour, " %"),
             charts.bars("Rejected containers by reason", [(k, v, v) for k, v in s.by_reason.items()]),
             charts.bars("Rejected containers by class", [(k, v, v) for k, v in s.by_class.items()]),
             charts.bars("Rejected containers by camera", [(k, v, v) for k, v in s.by_camera.items()])]
    return page(request, "stats.html", s=s, hours=hours_n, charts=shown)


def _local_hour(utc_hour: str) -> str:
    """'YYYY-MM-DD HH:00' in UTC (storage.stats) as the line's local 'DD HH:00'."""
    t = datetime.strptime(utc_hour, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc).astimezone()
    return t.strftime("%d %H:00")


# -- models --------------------------------------------------------------------------------
@requires("authenticated", redirect="login")
def models(request: Request) -> Response:
    station: Station = request.app.state.station
    rows = [dict(row, figures=figures(row)) for row in station.registry.list()]
    return page(request, "models.html", rows=rows, message=request.query_params.get("message"),
                progress=read_progress(station.data_dir))


@requires("authenticated")
def retrain_progress(request: Request) -> Response:
    """The Models page polls this: `edge retrain`'s progress file (engines/training/progress.py)."""
    station: Station = request.app.state.station
    return templates.TemplateResponse(request, "_progress.html", {"progress": read_progress(station.data_dir)})


@requires("engineer", status_code=403)
@csrf_protected
async def model_change(request: Request) -> Response:
    """Activate a version or roll back; running workers switch without a restart."""
    station: Station = request.app.state.station
    action = request.path_params["action"]
    if action not in ("activate", "rollback"):
        return Response("unknown action", status_code=404)
    form = await request.form()
    try:
        if action == "rollback":
            package = await run_in_threadpool(station.registry.rollback)
        else:
            package = await run_in_threadpool(station.registry.activate, str(form.get("version", "")))
    except (StorageError, EngineError) as exc:
        message = f"refused: {exc}"
    else:
        message = f"active model is now {package.version}"
        log.warning("%s: %s", request.user.display_name, message)
    return RedirectResponse(request.url_for("models").include_query_params(message=message), status_code=303)


def create_app(config, secret: str | None = None) -> Starlette:
    """The application for one line's config; `secret` overrides the session key file (tests)."""
    station = Station(config)
    secret = secret or session_secret(Path(config.data_dir) / config.ui.session_secret)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        tasks = [asyncio.create_task(station.feed.run()), asyncio.create_task(station.keep_counting()),
                 asyncio.create_task(station.keep_watching())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            station.db.close()

    routes = [
        Route("/", live, name="live"),
        Route("/login", login, name="login"),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/events", events, name="events"),
        Route("/container/{container_id:int}", container_page, name="container"),
        Route("/container/{line}/{seq:int}", container_by_seq, name="container_by_seq"),
        Route("/image/{path:path}", image, name="image"),
        Route("/thumb/{view_id:int}.jpg", thumb, name="thumb"),
        Route("/thumb/{line}/{seq:int}/{view:int}.jpg", thumb_by_seq, name="thumb_by_seq"),
        Route("/review", review, name="review"),
        Route("/review/{view_id:int}", review_post, methods=["POST"], name="review_post"),
        Route("/stats", stats, name="stats"),
        Route("/models", models, name="models"),
        Route("/models/progress", retrain_progress, name="retrain_progress"),
        Route("/models/{action:str}", model_change, methods=["POST"], name="model_change"),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(SessionMiddleware, secret_key=secret, session_cookie="edge_session",
                   max_age=int(config.ui.session_hours * 3600), same_site="strict", https_only=config.ui.tls),
        Middleware(AuthenticationMiddleware, backend=SessionUsers()),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.station = station
    return app
