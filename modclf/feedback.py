"""The feedback store: moderators' decisions, kept durably so they can flow back into training.

One row per comment ``id`` (idempotent: sending the same decision again changes nothing; sending a
different decision for the same id replaces it and keeps the old one in ``feedback_history``, so no
decision is ever lost). Every write is committed before the caller is answered, so an acknowledged
decision survives a crash or ``kill -9`` of the server.

Storage is any SQLAlchemy database URL (``MODCLF_FEEDBACK_DB``; PostgreSQL when several server
instances share one store, with its driver installed). The default is SQLite (``sqlite:///feedback.db``)
in WAL mode with ``synchronous=FULL`` (a committed write is on disk, not only in the OS cache) and
``BEGIN IMMEDIATE`` writes, so the workers of one gunicorn server queue for the write lock instead of
failing with "database is locked".

Labels are those of :data:`modclf.labels.LABELS`, plus :data:`HAM` ("not spam", recorded by the
Akismet-compatible ``submit-ham``, whose sender does not say which of the other labels applies).

This module has no web code: the HTTP endpoints (``POST /v1/feedback``, ``GET /v1/feedback/export``)
are in :mod:`modclf.serving.feedback_api`, ``modclf feedback export`` writes the same CSV
(:func:`iter_csv`) from the command line, and retraining reads the store directly.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from sqlalchemy import (Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, event, func,
                        insert, select, update)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from .errors import FeedbackError
from .csvsafe import safe_cell
from .labels import LABELS

log = logging.getLogger(__name__)

DEFAULT_FEEDBACK_DB = "sqlite:///feedback.db"
#: "Not spam": the label recorded by Akismet's submit-ham.
HAM = "ham"
FEEDBACK_LABELS: tuple[str, ...] = (*LABELS, HAM)
MAX_ID_CHARS = 256
MAX_SOURCE_CHARS = 256
EXPORT_COLUMNS = ("id", "text", "label", "source", "created_at", "updated_at")
EXPORT_BATCH = 500
#: Seconds a writer waits for another process' write lock before giving up (SQLite).
SQLITE_BUSY_TIMEOUT = 30.0

Outcome = Literal["created", "updated", "unchanged"]

_metadata = MetaData()
feedback_table = Table(
    "feedback", _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # stable export order
    Column("id", String(MAX_ID_CHARS), nullable=False, unique=True),
    Column("text", Text, nullable=False),
    Column("label", String(16), nullable=False),
    Column("source", String(MAX_SOURCE_CHARS), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
history_table = Table(
    "feedback_history", _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(MAX_ID_CHARS), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("label", String(16), nullable=False),
    Column("source", String(MAX_SOURCE_CHARS), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("replaced_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Decision:
    """One stored decision."""

    id: str
    text: str
    label: str
    source: str
    created_at: _dt.datetime
    updated_at: _dt.datetime


def resolve_db_url(explicit: str | None = None) -> str:
    """The store URL: ``explicit``, else the ``feedback_db`` setting (``$MODCLF_FEEDBACK_DB``, the
    settings file), else the default."""
    if explicit is not None and str(explicit).strip():
        return str(explicit).strip()
    from .settings import load_settings

    return load_settings().feedback_db


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _utc(value: _dt.datetime) -> _dt.datetime:
    """SQLite gives naive datetimes back; they were written as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)


class FeedbackStore:
    """Decisions in a SQL database. Thread-safe; safe across fork (one engine per process)."""

    def __init__(self, url: str, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT, durable: bool = True,
                 create: bool = True):
        self.busy_timeout = busy_timeout
        #: create a missing SQLite file (and its directory) and the tables on first use; False for a
        #: reader (``modclf feedback export``), which must not leave an empty store behind a wrong URL
        self.create = create
        #: SQLite: synchronous=FULL (a commit is on disk before it returns) when durable, else NORMAL
        #: (in WAL mode a commit survives a crash of the process, not of the machine, and costs no fsync)
        self.durable = durable
        try:
            self._url: URL = make_url(url)
        except ArgumentError:
            raise FeedbackError(f"feedback store: not a database URL: {url!r}") from None
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid: int | None = None

    @property
    def url(self) -> str:
        """The URL with any password hidden (for logs and messages)."""
        return self._url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self._url.get_backend_name() == "sqlite"

    def sqlite_path(self) -> Path | None:
        """The database file of a file-based SQLite store, else None."""
        if not self.is_sqlite or not self._url.database or self._url.database == ":memory:":
            return None
        return Path(self._url.database)

    # -- connection management ------------------------------------------------------------------

    def _make_engine(self) -> Engine:
        if self.is_sqlite:
            path = self.sqlite_path()
            if path is not None and not self.create and not path.is_file():
                raise FeedbackError(f"no feedback store at {path} ({self.url}); check --feedback-db or "
                                    "$MODCLF_FEEDBACK_DB")
            if path is not None and self.create:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self._url, connect_args={"timeout": self.busy_timeout})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
                # Take transaction control from the sqlite3 module, so "begin" below decides how.
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")  # first: the WAL switch may wait
                cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                cursor.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Connection) -> None:
                # A write takes the lock up front: a deferred transaction that reads then writes can
                # fail at once with SQLITE_BUSY when another process committed in between.
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
        else:
            engine = create_engine(self._url, pool_pre_ping=True)
        if not self.create:
            return engine
        try:
            _create_tables(engine)
        except (OperationalError, ProgrammingError):
            # Two workers' first requests can race to create the tables; the loser sees "already
            # exists". Checking again settles it (and re-raises a real failure).
            _create_tables(engine)
        return engine

    def engine(self) -> Engine:
        """This process' engine, created (with the tables) on first use.

        Lazily, per process: gunicorn forks workers from a master that built the app, and a
        database connection must never be shared across fork. Also, merely starting the service
        creates no database file.
        """
        pid = os.getpid()
        if self._engine is None or self._pid != pid:
            with self._lock:
                if self._engine is None or self._pid != pid:
                    if self._engine is not None:
                        self._engine.dispose(close=False)  # the parent's connections stay the parent's
                    try:
                        self._engine = self._make_engine()
                    except SQLAlchemyError as exc:
                        raise FeedbackError(f"feedback store {self.url}: cannot open: {_short(exc)}") from None
                    except ModuleNotFoundError as exc:
                        raise FeedbackError(f"feedback store {self.url}: database driver not installed ({exc.name})") from None
                    except OSError as exc:
                        raise FeedbackError(f"feedback store {self.url}: cannot create its directory: {exc.strerror or exc}") from None
                    self._pid = pid
        return self._engine

    def check(self) -> None:
        """Open the store now (create tables); raises FeedbackError."""
        self.engine()

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine, self._pid = None, None

    # -- writes -----------------------------------------------------------------------------------

    def record(self, id: str, text: str, label: str, source: str) -> Outcome:
        """Store one decision; returns only after it is committed.

        Same id with the same text and label: ``unchanged``. Same id with another text or label:
        ``updated`` (the previous decision is moved to ``feedback_history``). Raises ValueError for
        a bad label or empty id/text, FeedbackError when the database fails.
        """
        check_decision(id, text, label)
        for attempt in range(3):
            try:
                with self.engine().connect() as conn:
                    conn.execution_options(write=True)
                    with conn.begin():  # commits on leaving the block, before we return
                        outcome = record_on(conn, id, text, label, source)
                return outcome
            except IntegrityError:
                # Another process inserted this id between our read and our insert (databases
                # without a write lock up front): read again, and it is an update or a repeat.
                if attempt == 2:
                    raise FeedbackError(f"feedback store {self.url}: concurrent writes to id {id!r} kept conflicting") from None
            except SQLAlchemyError as exc:
                raise FeedbackError(f"feedback store {self.url}: write failed: {_short(exc)}") from None
        raise AssertionError("unreachable")

    # -- reads ------------------------------------------------------------------------------------

    def iter_decisions(self, batch: int = EXPORT_BATCH) -> Iterator[Decision]:
        """Every stored decision in insertion order, read in batches of short transactions."""
        t = feedback_table
        last = 0
        while True:
            try:
                with self.engine().connect() as conn:
                    rows = conn.execute(select(t).where(t.c.seq > last).order_by(t.c.seq).limit(batch)).all()
            except SQLAlchemyError as exc:
                raise FeedbackError(f"feedback store {self.url}: read failed: {_short(exc)}") from None
            for row in rows:
                yield Decision(row.id, row.text, row.label, row.source, _utc(row.created_at), _utc(row.updated_at))
            if len(rows) < batch:
                return
            last = rows[-1].seq

    def decisions(self) -> list[Decision]:
        return list(self.iter_decisions())

    def count(self) -> int:
        try:
            with self.engine().connect() as conn:
                return int(conn.execute(select(func.count()).select_from(feedback_table)).scalar_one())
        except SQLAlchemyError as exc:
            raise FeedbackError(f"feedback store {self.url}: read failed: {_short(exc)}") from None


def check_decision(id: str, text: str, label: str) -> None:
    """Raise ValueError for a bad label or an empty or over-long id, or an empty text."""
    if label not in FEEDBACK_LABELS:
        raise ValueError(f"unknown label {label!r} (labels: {', '.join(FEEDBACK_LABELS)})")
    if not id or len(id) > MAX_ID_CHARS:
        raise ValueError(f"id must have 1 to {MAX_ID_CHARS} characters")
    if not text.strip():
        raise ValueError("text is empty")


def record_on(conn: Connection, id: str, text: str, label: str, source: str) -> Outcome:
    """The write of :meth:`FeedbackStore.record` inside the caller's (write) transaction on ``conn``,
    so another store on the same database (the review queue) can commit its own change and the
    decision together. The caller checks the input (:func:`check_decision`) and commits."""
    source = source[:MAX_SOURCE_CHARS]
    t = feedback_table
    now = _now()
    row = conn.execute(select(t.c.text, t.c.label, t.c.source, t.c.updated_at).where(t.c.id == id)).first()
    if row is None:
        conn.execute(insert(t).values(id=id, text=text, label=label, source=source, created_at=now, updated_at=now))
        return "created"
    if row.text == text and row.label == label:
        return "unchanged"
    conn.execute(insert(history_table).values(id=id, text=row.text, label=row.label, source=row.source,
                                              decided_at=row.updated_at, replaced_at=now))
    conn.execute(update(t).where(t.c.id == id).values(text=text, label=label, source=source, updated_at=now))
    return "updated"


def _create_tables(engine: Engine) -> None:
    """Create missing tables in one write transaction (SQLite: BEGIN IMMEDIATE, so a process that
    finds another one creating them waits for it instead of failing with "database is locked")."""
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            _metadata.create_all(conn)


def _short(exc: BaseException) -> str:
    """The first line of a driver error, without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


def iter_csv(decisions: Iterator[Decision], chunk_bytes: int = 64 * 1024) -> Iterator[str]:
    """The export format: a header and one spreadsheet-safe row per decision (modclf.csvsafe),
    yielded in chunks of about ``chunk_bytes``; used by the HTTP export and ``modclf feedback export``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for decision in decisions:
        writer.writerow([safe_cell(decision.id), safe_cell(decision.text), decision.label, safe_cell(decision.source),
                         decision.created_at.isoformat(), decision.updated_at.isoformat()])
        if buf.tell() >= chunk_bytes:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
