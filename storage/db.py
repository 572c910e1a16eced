"""The database: typed SQLAlchemy 2 models, engine set-up and in-place upgrades.

SQLite (the default, one line PC) runs in WAL mode with a busy timeout so that a reader
(`edge db stats`, a dashboard) never makes the writer fail with "database is locked".
The same models run on PostgreSQL for a plant that collects several lines. The schema
is owned by the Alembic revisions in storage/migrations/, applied at start-up
(`open_database`), so a line PC upgrades its database in place with the software.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        create_engine, event, inspect)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

from storage.errors import StorageError

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0
# A row id that autoincrements on both: SQLite only does so for INTEGER PRIMARY KEY.
RowId = BigInteger().with_variant(Integer, "sqlite")

# views.image_state: what became of the view's image file.
NOT_KEPT, STORED, PURGED, LOST = "none", "stored", "purged", "lost"


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (naive text) as on PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value  # records are UTC wall time: a naive one is taken as UTC, never refused
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class Container(Base):
    __tablename__ = "containers"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    line_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    t_gate: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    n_views: Mapped[int] = mapped_column(Integer)  # views recorded; fewer rows means a partial write
    section: Mapped[int | None] = mapped_column(Integer)  # the mould, when the line reads it (revision 0005)
    cavity: Mapped[int | None] = mapped_column(Integer)

    model_version: Mapped[ModelVersion | None] = relationship(lazy="joined")
    views: Mapped[list["View"]] = relationship(
        back_populates="container", cascade="all, delete-orphan", passive_deletes=True, order_by="View.view")
    # One row per container whatever the retries (revision 0004); also serves lookups by (line_id, seq).
    __table_args__ = (Index("ux_containers_line_seq_t_gate", "line_id", "seq", "t_gate", unique=True),)


class View(Base):
    __tablename__ = "views"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    container_id: Mapped[int] = mapped_column(ForeignKey("containers.id", ondelete="CASCADE"), index=True)
    view: Mapped[int] = mapped_column(Integer)
    camera_id: Mapped[str] = mapped_column(String(64))
    t_capture: Mapped[datetime | None] = mapped_column(UTCDateTime)
    missing: Mapped[str | None] = mapped_column(String(128))
    image_file: Mapped[str | None] = mapped_column(String(255))  # relative to the data folder
    image_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    image_state: Mapped[str] = mapped_column(String(8), default=NOT_KEPT)
    labelled: Mapped[bool] = mapped_column(Boolean, default=False)  # revision 0002

    container: Mapped[Container] = relationship(back_populates="views")
    detections: Mapped[list["Detection"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True)
    labels: Mapped[list["Label"]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    __table_args__ = (Index("ix_views_purge", "image_state", "labelled", "id"),)


class BoxColumns:
    """x1 y1 x2 y2 in view pixels, shared by detections (the model's) and labels (a person's)."""

    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)

    @property
    def box(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


class Detection(BoxColumns, Base):
    __tablename__ = "detections"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    view_id: Mapped[int] = mapped_column(ForeignKey("views.id", ondelete="CASCADE"), index=True)
    class_name: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    # The class threshold the line compared the score with (revision 0006; NULL before).
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)


class Label(BoxColumns, Base):
    """A person's box on a view (imported from a labelling tool): training truth, not a detection."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    view_id: Mapped[int] = mapped_column(ForeignKey("views.id", ondelete="CASCADE"), index=True)
    class_name: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    t: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    line_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    container_seq: Mapped[int | None] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A person who signs in to the operator station (`edge users add`); revision 0003."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # operator | engineer
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, never the password
    created: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass
class Database:
    engine: Engine
    session: sessionmaker

    def close(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign keys on every connection."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"database URL {url!r} does not parse; use sqlite:///PATH or "
                           "postgresql+psycopg://user:password@host/db") from None
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut loses the last commits, never consistency
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def _alembic_config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` in place (what a line PC does at start-up)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    with make_engine("sqlite://").connect() as conn:
        return ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()


def open_database(url: str, migrate: bool = True) -> Database:
    """Connect, upgrade the schema to the running software's revision, return a session factory."""
    engine = make_engine(url)
    try:
        if migrate:
            upgrade(engine)
        elif current_revision(engine) != head_revision():
            raise StorageError(f"{_safe(url)}: schema is at revision {current_revision(engine)}, "
                               f"the software needs {head_revision()}; run `edge db upgrade`")
    except OperationalError as exc:
        engine.dispose()
        raise StorageError(f"{_safe(url)}: cannot open the database ({exc.orig}); "
                           "check storage.database in config.yaml and that the server runs") from None
    return Database(engine, sessionmaker(engine, expire_on_commit=False))


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
