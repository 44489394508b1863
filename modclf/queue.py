"""The review queue: every comment the policy held for a human (action ``review``), and what the
human decided.

Recording (:meth:`ReviewQueue.record`) is called by the service for every verdict whose action is
``review``, whichever way the comment came in (``/v1/classify``, the batch endpoint, Coral,
Akismet): the text, the client's id if any, the source, the predicted label and probabilities, the
action, the model and policy versions, and the time. A comment that is already pending with the
same text, client id and source is not queued twice (clients retry; Coral re-asks on edits).

Deciding (:meth:`ReviewQueue.decide`) takes the item out of the pending queue and writes the
decision into the feedback store (:mod:`modclf.feedback`) in the **same database transaction**, so
an acknowledged decision is always in both, and ``modclf train --with-feedback`` learns from it.
Which label the feedback record gets (:func:`feedback_label`):

- the label the moderator gave, when given (any of the five labels);
- otherwise, ``reject`` of an item the model labelled ``spam``: ``spam``;
- otherwise, ``approve`` of an item the model labelled anything but ``spam``: the predicted label
  (the moderator saw it and let it through: the label stands);
- otherwise (``approve`` of a predicted ``spam``, ``reject`` of a predicted non-spam comment) the
  label is not implied by the action, and a label is required (:class:`LabelRequired`). A
  rejected dispute may be abusive without being spam; an approved "spam" is some other label.

A decision is idempotent: the same action and label again changes nothing (``unchanged``). A
different second decision is refused (:class:`DecisionConflict`) unless ``override`` is set; an
override replaces the decision here and in the feedback store (which keeps the previous label in
its history).

Storage: the feedback store's database (the ``feedback_db`` setting; SQLite in WAL mode or
PostgreSQL), tables ``review_queue``. Recording uses its own connection pool whose SQLite busy
timeout is short (:data:`RECORD_BUSY_TIMEOUT`), because it runs inside a classification request:
when the database is locked or down, the service logs the error, counts it
(``modclf_queue_record_failures_total``) and still answers the verdict; the comment is then held by
the platform as usual but is missing from this queue. Classification never fails because of the
queue.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from sqlalchemy import (Boolean, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, and_, func,
                        insert, or_, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from .errors import FeedbackError
from .feedback import MAX_ID_CHARS, FeedbackStore, _short, check_decision, record_on
from .labels import LABELS

log = logging.getLogger(__name__)

#: Seconds a classification request waits for SQLite's write lock to queue a comment.
RECORD_BUSY_TIMEOUT = 0.02
MAX_SOURCE_CHARS = 64
MAX_URL_CHARS = 2048
ACTIONS = ("approve", "reject")
ORDERS = ("oldest", "uncertain")
#: Prefix of the feedback-store id of a queue decision: ``queue:<item id>``.
FEEDBACK_ID_PREFIX = "queue:"
FEEDBACK_SOURCE_PREFIX = "queue/"

Status = Literal["decided", "unchanged", "updated"]

_metadata = MetaData()
queue_table = Table(
    "review_queue", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(MAX_ID_CHARS), nullable=True),
    Column("text", Text, nullable=False),
    Column("text_sha256", String(64), nullable=False, index=True),  # dedup and linking (Coral webhooks)
    Column("source", String(MAX_SOURCE_CHARS), nullable=False),
    Column("story_url", String(MAX_URL_CHARS), nullable=True),
    Column("label", String(16), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("margin", Float, nullable=False),  # top probability minus the second: small = uncertain
    Column("probabilities", Text, nullable=False),  # JSON, LABELS order
    Column("action", String(16), nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # pending | decided
    Column("decision", String(16), nullable=True),  # approve | reject
    Column("decision_label", String(16), nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Index("ix_review_queue_status_id", "status", "id"),
    Index("ix_review_queue_status_margin", "status", "margin"),
)


class QueueError(Exception):
    """Base of the queue's refusals (input the caller can fix)."""


class NotFound(QueueError):
    pass


class LabelRequired(QueueError):
    pass


class DecisionConflict(QueueError):
    def __init__(self, message: str, current: "Item"):
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class Item:
    """One queued comment (and its decision, once decided)."""

    id: int
    client_id: str | None
    text: str
    source: str
    story_url: str | None
    label: str
    confidence: float
    margin: float
    probabilities: dict[str, float]
    action: str
    truncated: bool
    model_version: str
    policy_version: str
    created_at: _dt.datetime
    status: str
    decision: str | None
    decision_label: str | None
    decided_by: str | None
    decided_at: _dt.datetime | None

    def as_dict(self, window_chars: int | None = None) -> dict[str, Any]:
        """JSON-ready (the API's QueueItem). With ``window_chars``, ``text`` is what the model read
        (:func:`shown_text`: the whole comment, or its bounded window when it is longer) and
        ``omitted_chars`` counts the characters left out, so a page's size is bounded by its
        number of items times the window whatever the comments' length."""
        text, omitted = self.text, 0
        if window_chars is not None:
            shown = shown_text(self.text, window_chars)
            text, omitted = shown.text, shown.omitted
        out: dict[str, Any] = {
            "id": self.id, "client_id": self.client_id, "text": text, "omitted_chars": omitted, "source": self.source,
            "story_url": self.story_url, "label": self.label, "confidence": self.confidence,
            "probabilities": self.probabilities, "action": self.action, "truncated": self.truncated,
            "model_version": self.model_version, "policy_version": self.policy_version,
            "created_at": self.created_at.isoformat(), "status": self.status,
        }
        if self.status == "decided":
            out["decision"] = {"action": self.decision, "label": self.decision_label, "by": self.decided_by,
                               "decided_at": self.decided_at.isoformat() if self.decided_at else None}
        return out


#: Windows of long comments computed per process (:func:`shown_text`); each is at most the window.
SHOWN_CACHE_SIZE = 256
_shown_cache: "OrderedDict[tuple[bytes, int, int], Shown]" = OrderedDict()
_shown_lock = threading.Lock()


@dataclass(frozen=True)
class Shown:
    """What of a queued comment is shown to a moderator: what the model read.

    ``text`` is the comment (cleaned as for classification) when it fits the model's window, else
    its bounded window (:func:`modclf.window.bounded_window`: head, link/contact stretches, tail,
    joined by :data:`modclf.window.SEPARATOR`), exactly the string the model classified and the
    console explains. ``parts`` are the stretches of the original in ``text``: ``(start, end)`` in
    ``text`` and ``(orig_start, orig_end)`` in the comment; ``omitted`` counts the characters of the
    comment that are not shown, ``total`` its length."""

    text: str
    parts: tuple[tuple[int, int, int, int], ...]
    omitted: int
    total: int


def shown_text(text: str, window_chars: int) -> Shown:
    """The part of ``text`` the model read at ``window_chars`` (see :class:`Shown`).

    Its size is bounded by the window. Finding the window of a long comment scans the whole comment
    for link cues (about 0.3 s for 900,000 characters), so the windows of long comments are kept per
    process (:data:`SHOWN_CACHE_SIZE`, keyed by the text's digest): the queue is read again and
    again, the text of a queued comment never changes."""
    from .moderator import clean_text
    from .window import bounded_window

    cleaned = clean_text(text)
    if len(cleaned) <= window_chars:
        return Shown(cleaned, ((0, len(cleaned), 0, len(cleaned)),), 0, len(cleaned))
    key = (hashlib.sha256(cleaned.encode("utf-8", "surrogatepass")).digest(), len(cleaned), window_chars)
    with _shown_lock:
        hit = _shown_cache.get(key)
        if hit is not None:
            _shown_cache.move_to_end(key)
            return hit
    shown = _window_parts(cleaned, bounded_window(cleaned, window_chars).text)
    with _shown_lock:
        _shown_cache[key] = shown
        while len(_shown_cache) > SHOWN_CACHE_SIZE:
            _shown_cache.popitem(last=False)
    return shown


def _window_parts(cleaned: str, window: str) -> Shown:
    """Locate the pieces of ``window`` (a bounded window of ``cleaned``) in ``cleaned``."""
    from .window import SEPARATOR

    sep = len(SEPARATOR)
    parts: list[list[int]] = []
    wpos = pos = 0
    for piece in window.split(SEPARATOR):
        if piece:
            where = cleaned.find(piece, pos)
            if where < 0:  # cannot happen for a window of this text; show it as it is
                return Shown(window, ((0, len(window), 0, len(window)),), max(len(cleaned) - len(window), 0),
                             len(cleaned))
            if parts and where == parts[-1][3] + sep and cleaned[parts[-1][3]:where] == SEPARATOR:
                parts[-1][1], parts[-1][3] = wpos + len(piece), where + len(piece)  # the comment's own separator
            else:
                parts.append([wpos, wpos + len(piece), where, where + len(piece)])
            pos = where + len(piece)
        wpos += len(piece) + sep
    shown_chars = sum(p[3] - p[2] for p in parts)
    return Shown(window, tuple((a, b, c, d) for a, b, c, d in parts), len(cleaned) - shown_chars, len(cleaned))


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_cursor: str | None
    pending: int


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def feedback_label(action: str, predicted: str, given: str | None) -> str:
    """The label a decision writes into the feedback store (the rule in the module docstring)."""
    if given is not None:
        if given not in LABELS:
            raise ValueError(f"unknown label {given!r} (labels: {', '.join(LABELS)})")
        return given
    if action == "reject" and predicted == "spam":
        return "spam"
    if action == "approve" and predicted != "spam":
        return predicted
    if action == "approve":
        raise LabelRequired("this comment was predicted spam: approving it needs the label it really has")
    raise LabelRequired(f"this comment was predicted {predicted}, not spam: rejecting it needs a label "
                        "(spam, or the label it has)")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)


def _margin(probabilities: Mapping[str, float]) -> float:
    top = sorted(probabilities.values(), reverse=True)
    return float(top[0] - (top[1] if len(top) > 1 else 0.0))


def _item(row: Any) -> Item:
    return Item(row.id, row.client_id, row.text, row.source, row.story_url, row.label, row.confidence, row.margin,
                json.loads(row.probabilities), row.action, bool(row.truncated), row.model_version, row.policy_version,
                _utc(row.created_at), row.status, row.decision, row.decision_label, row.decided_by,  # type: ignore[arg-type]
                _utc(row.decided_at))


def _encode_cursor(order: str, item: Item) -> str:
    key = [item.id] if order == "oldest" else [item.margin, item.id]
    raw = json.dumps([order, *key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> list[Any]:
    """The position a cursor of ``order`` points after; ValueError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor returned by this endpoint") from None
    if not isinstance(value, list) or not value or value[0] != order:
        raise ValueError(f"not a cursor for order={order}")
    key = value[1:]
    if order == "oldest" and (len(key) != 1 or type(key[0]) is not int):
        raise ValueError("not a cursor returned by this endpoint")
    if order == "uncertain" and (len(key) != 2 or not isinstance(key[0], (int, float)) or isinstance(key[0], bool)
                                 or type(key[1]) is not int):
        raise ValueError("not a cursor returned by this endpoint")
    return key


class BackgroundRecorder:
    """Records queue entries off the request path: a call enqueues and returns; one writer per
    process (a thread, or a greenlet under gevent workers, started on first use and after a fork)
    writes whatever has accumulated in one transaction. Under load, the synchronous write of each
    classify call, with five workers contending for SQLite's write lock, was most of the latency
    of a classify request (bench/bench_service.py: p99 x10). :meth:`flush` waits until everything
    enqueued so far is written; the queue's readers call it, so a process reads what it recorded.

    ``record`` is :meth:`ReviewQueue.record`; ``on_result(entries, added_or_exception)`` is told the
    outcome of every write (metrics, logs). Entries still in memory when the process is killed are
    lost: the platform holds those comments either way (Coral SYSTEM_WITHHELD, Akismet spam).

    The writer lingers up to :attr:`LINGER` seconds after the first entry of a batch so that a busy
    server writes many held comments per transaction: one transaction per classify call was about
    half of the CPU of a classify request under load. :meth:`flush` cuts the linger short.
    """

    BATCH = 500
    #: seconds the writer waits for more entries before writing a batch (flush wakes it at once)
    LINGER = 0.1
    #: attempts while another process holds SQLite's write lock (about 0.05 s apart: 5 s in all)
    RETRIES = 100

    def __init__(self, record: Callable[[list[Mapping[str, Any]]], int],
                 on_result: Callable[[list[Mapping[str, Any]], Any], None] | None = None):
        self._record = record
        self._on_result = on_result
        self._pid: int | None = None
        self._queue: Any = None
        self._wake: Any = None
        self._start_lock = threading.Lock()

    def __call__(self, entries: list[Mapping[str, Any]]) -> None:
        self._ensure_writer()
        self._queue.put(list(entries))

    def _ensure_writer(self) -> None:
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            import queue as queue_module

            self._queue = queue_module.Queue()
            self._wake = threading.Event()
            threading.Thread(target=self._run, name="modclf-queue-writer", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        q = self._queue
        while True:
            batch = list(q.get())
            done = 1
            if self.LINGER > 0 and q.qsize() < self.BATCH:
                self._wake.wait(self.LINGER)
                self._wake.clear()
            while len(batch) < self.BATCH:
                try:
                    batch.extend(q.get_nowait())
                    done += 1
                except Exception:  # queue.Empty
                    break
            outcome: Any = None
            for attempt in range(self.RETRIES):
                try:
                    outcome = self._record(batch)
                    break
                except Exception as exc:  # noqa: BLE001 - reported, never kills the writer
                    outcome = exc
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        break
                    # SQLite's own busy wait blocks in C (the whole worker, under gevent): wait here
                    # instead, where time.sleep lets the worker's other requests run
                    time.sleep(0.05)
            if self._on_result is not None:
                try:
                    self._on_result(batch, outcome)
                except Exception:  # noqa: BLE001
                    log.exception("review queue: reporting a write failed")
            for _ in range(done):
                q.task_done()

    def flush(self) -> None:
        """Block until every entry enqueued by this process so far is written (or failed)."""
        if self._pid == os.getpid() and self._queue is not None:
            self._wake.set()
            self._queue.join()


class ReviewQueue:
    """The queue in the feedback store's database. Thread-safe; safe across fork."""

    def __init__(self, feedback: FeedbackStore, *, record_busy_timeout: float = RECORD_BUSY_TIMEOUT):
        self.feedback = feedback
        # its own pool with a short lock wait for the recording done inside classification requests,
        # and no fsync per held comment (SQLite synchronous=NORMAL under WAL: an entry survives a
        # crash of the server, not of the machine; the platform holds the comment either way, and
        # an fsync per classify request stalled every comment behind it: bench_service p99 x10)
        self._recorder = FeedbackStore(feedback._url.render_as_string(hide_password=False),
                                       busy_timeout=record_busy_timeout, durable=False)
        self._lock = threading.Lock()
        self._ready: set[tuple[int, int]] = set()  # (pid, id(engine)) with the tables created
        #: the BackgroundRecorder feeding this queue, if any: readers flush it first
        self.writer: BackgroundRecorder | None = None

    def _flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    @property
    def url(self) -> str:
        return self.feedback.url

    def _engine(self, store: FeedbackStore) -> Engine:
        try:
            engine = store.engine()
        except FeedbackError:
            raise
        key = (os.getpid(), id(engine))
        if key not in self._ready:
            with self._lock:
                if key not in self._ready:
                    try:
                        self._create(engine)
                    except (OperationalError, ProgrammingError):
                        self._create(engine)  # two workers racing to create: check again
                    except SQLAlchemyError as exc:
                        raise FeedbackError(f"review queue {self.url}: cannot create its table: {_short(exc)}") from None
                    self._ready.add(key)
        return engine

    @staticmethod
    def _create(engine: Engine) -> None:
        with engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                _metadata.create_all(conn)

    def check(self) -> None:
        self._flush()  # callers read the queue table next (Coral webhook linking)
        self._engine(self.feedback)

    def close(self) -> None:
        self._recorder.close()

    # -- writes -----------------------------------------------------------------------------------

    def record(self, entries: Sequence[Mapping[str, Any]]) -> int:
        """Queue held comments in one transaction; returns how many were new. Each entry has the
        keys of a verdict (label, confidence, probabilities, action, truncated, model_version,
        policy_version) plus ``text``, ``source`` and optionally ``client_id`` and ``story_url``.
        Raises FeedbackError when the database fails."""
        if not entries:
            return 0
        t = queue_table
        now = _now()
        rows = []
        for e in entries:
            text = e["text"]
            client_id = e.get("client_id")
            rows.append(dict(
                client_id=client_id[:MAX_ID_CHARS] if client_id else None, text=text, text_sha256=text_digest(text),
                source=str(e.get("source") or "api")[:MAX_SOURCE_CHARS],
                story_url=(e.get("story_url") or None) and str(e["story_url"])[:MAX_URL_CHARS],
                label=e["label"], confidence=float(e["confidence"]), margin=_margin(e["probabilities"]),
                probabilities=json.dumps({k: float(v) for k, v in e["probabilities"].items()}),
                action=e["action"], truncated=bool(e.get("truncated")), model_version=str(e["model_version"]),
                policy_version=str(e["policy_version"]), created_at=now, status="pending"))
        try:
            with self._engine(self._recorder).connect() as conn:
                conn.execution_options(write=True)
                with conn.begin():
                    digests = sorted({r["text_sha256"] for r in rows})
                    existing = conn.execute(select(t.c.text_sha256, t.c.client_id, t.c.source)
                                            .where(t.c.status == "pending", t.c.text_sha256.in_(digests))).all()
                    seen = {(r.text_sha256, r.client_id, r.source) for r in existing}
                    new = []
                    for r in rows:
                        key = (r["text_sha256"], r["client_id"], r["source"])
                        if key not in seen:
                            seen.add(key)
                            new.append(r)
                    if new:
                        conn.execute(insert(t), new)
            return len(new)
        except SQLAlchemyError as exc:
            raise FeedbackError(f"review queue {self.url}: write failed: {_short(exc)}") from None

    def decide(self, item_id: int, action: str, label: str | None = None, *, override: bool = False,
               by: str = "api") -> tuple[Status, Item]:
        """Record a moderator's decision on an item and write it to the feedback store, in one
        transaction. Raises NotFound, LabelRequired, DecisionConflict, ValueError (bad action or
        label), FeedbackError (database)."""
        self._flush()
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
        t = queue_table
        try:
            with self._engine(self.feedback).connect() as conn:
                conn.execution_options(write=True)
                with conn.begin():
                    row = conn.execute(select(t).where(t.c.id == item_id).with_for_update()).first()
                    if row is None:
                        raise NotFound(f"no queue item {item_id}")
                    item = _item(row)
                    final_label = feedback_label(action, item.label, label)
                    if item.status == "decided":
                        if item.decision == action and item.decision_label == final_label:
                            return "unchanged", item
                        if not override:
                            raise DecisionConflict(
                                f"item {item_id} was already decided ({item.decision}, label {item.decision_label}); "
                                "send override: true to replace that decision", item)
                        status: Status = "updated"
                    else:
                        status = "decided"
                    now = _now()
                    fid = f"{FEEDBACK_ID_PREFIX}{item.id}"
                    check_decision(fid, item.text, final_label)
                    record_on(conn, fid, item.text, final_label, f"{FEEDBACK_SOURCE_PREFIX}{item.source}")
                    conn.execute(update(t).where(t.c.id == item_id).values(
                        status="decided", decision=action, decision_label=final_label, decided_by=by[:64],
                        decided_at=now))
                    row = conn.execute(select(t).where(t.c.id == item_id)).first()
                    return status, _item(row)
        except SQLAlchemyError as exc:
            raise FeedbackError(f"review queue {self.url}: write failed: {_short(exc)}") from None

    # -- reads ------------------------------------------------------------------------------------

    def pending(self, *, order: str = "oldest", label: str | None = None, source: str | None = None,
                limit: int = 50, cursor: str | None = None, offset: int = 0) -> Page:
        """Pending items, ``oldest`` first (by id) or most ``uncertain`` first (smallest margin
        between the two most probable labels), filtered by predicted label and source. Pages by
        ``cursor`` (stable while items are decided) or ``offset``. Raises ValueError for a bad
        order or cursor, FeedbackError."""
        self._flush()
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}")
        t = queue_table
        where = [t.c.status == "pending"]
        if label is not None:
            where.append(t.c.label == label)
        if source is not None:
            where.append(t.c.source == source)
        count_where = list(where)
        if cursor is not None:
            key = decode_cursor(cursor, order)
            if order == "oldest":
                where.append(t.c.id > key[0])
            else:
                where.append(or_(t.c.margin > key[0], and_(t.c.margin == key[0], t.c.id > key[1])))
        ordering = [t.c.id] if order == "oldest" else [t.c.margin, t.c.id]
        try:
            with self._engine(self.feedback).connect() as conn:
                rows = conn.execute(select(t).where(*where).order_by(*ordering).offset(offset).limit(limit + 1)).all()
                total = int(conn.execute(select(func.count()).select_from(t).where(*count_where)).scalar_one())
        except SQLAlchemyError as exc:
            raise FeedbackError(f"review queue {self.url}: read failed: {_short(exc)}") from None
        items = [_item(r) for r in rows[:limit]]
        next_cursor = _encode_cursor(order, items[-1]) if len(rows) > limit and items else None
        return Page(items, next_cursor, total)

    def get(self, item_id: int) -> Item | None:
        self._flush()
        t = queue_table
        try:
            with self._engine(self.feedback).connect() as conn:
                row = conn.execute(select(t).where(t.c.id == item_id)).first()
        except SQLAlchemyError as exc:
            raise FeedbackError(f"review queue {self.url}: read failed: {_short(exc)}") from None
        return _item(row) if row is not None else None

    def recent_decisions(self, limit: int = 50) -> list[Item]:
        """The last decided items, newest decision first."""
        self._flush()
        t = queue_table
        try:
            with self._engine(self.feedback).connect() as conn:
                rows = conn.execute(select(t).where(t.c.status == "decided")
                                    .order_by(t.c.decided_at.desc(), t.c.id.desc()).limit(limit)).all()
        except SQLAlchemyError as exc:
            raise FeedbackError(f"review queue {self.url}: read failed: {_short(exc)}") from None
        return [_item(r) for r in rows]

    def decisions_by_day(self, days: int = 14) -> list[dict[str, Any]]:
        """Per UTC day of the last ``days``: decisions by action and by final label (for the chart)."""
        self._flush()
        t = queue_table
        since = _now() - _dt.timedelta(days=days)
        try:
            with self._engine(self.feedback).connect() as conn:
                rows = conn.execute(select(t.c.decided_at, t.c.decision, t.c.decision_label)
                                    .where(t.c.status == "decided", t.c.decided_at >= since)).all()
        except SQLAlchemyError as exc:
            raise FeedbackError(f"review queue {self.url}: read failed: {_short(exc)}") from None
        out: dict[str, dict[str, Any]] = {}
        for decided_at, decision, dlabel in rows:
            day = _utc(decided_at).date().isoformat()  # type: ignore[union-attr]
            entry = out.setdefault(day, {"day": day, "actions": {a: 0 for a in ACTIONS},
                                         "labels": {lab: 0 for lab in LABELS}})
            entry["actions"][decision] = entry["actions"].get(decision, 0) + 1
            entry["labels"][dlabel] = entry["labels"].get(dlabel, 0) + 1
        return [out[d] for d in sorted(out)]

    def pending_count(self) -> int:
        self._flush()
        t = queue_table
        try:
            with self._engine(self.feedback).connect() as conn:
                return int(conn.execute(select(func.count()).select_from(t).where(t.c.status == "pending")).scalar_one())
        except SQLAlchemyError as exc:
            raise FeedbackError(f"review queue {self.url}: read failed: {_short(exc)}") from None


def review_entries(results: Iterable[Mapping[str, Any]], texts: Sequence[str], *, source: str,
                   client_ids: Sequence[str | None] | None = None,
                   story_url: str | None = None) -> list[dict[str, Any]]:
    """The queue entries of the verdicts whose action is ``review`` (the service's recorder input)."""
    out = []
    for i, (result, text) in enumerate(zip(results, texts)):
        if result.get("action") != "review":
            continue
        out.append({**result, "text": text, "source": source, "client_id": client_ids[i] if client_ids else None,
                    "story_url": story_url})
    return out
