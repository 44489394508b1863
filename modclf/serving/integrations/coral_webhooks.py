"""Coral webhooks: learn from the decisions moderators make in Coral's own queue.

``POST /integrations/coral/webhooks``, installed only when ``CORAL_WEBHOOK_SECRET`` (setting
``coral_webhook_secret``) is set. Configure it in Coral at /admin/configure/webhooks (a webhook
endpoint, not the external moderation phase: it has its own signing secret) with the events
``STORY_CREATED``, ``COMMENT_ENTERED_MODERATION_QUEUE`` and ``COMMENT_LEFT_MODERATION_QUEUE``.

The protocol, as Coral's "Webhooks" guide documents it
--------------------------------------------------------

- A POST with a JSON body ``{"id", "type", "data": {...}, "createdAt", "tenantID",
  "tenantDomain"}``: ``id`` is the event's unique id, ``type`` its name (also in the
  ``X-Coral-Event`` header), ``createdAt`` when Coral published it (ISO 8601).
- ``X-Coral-Signature: sha256=<hex>[,sha256=<hex>...]``: the hex HMAC-SHA256 of the **raw body**
  under each of the endpoint's active signing secrets (several while a secret is rolled and the old
  one kept alive). Coral's scheme is "like Stripe v1" but, unlike Stripe, signs the body alone:
  the header has no ``t=`` timestamp and no ``v1=`` element.

What this endpoint does with it
-------------------------------

1. Verifies the raw body against every configured secret (comma-separated
   ``CORAL_WEBHOOK_SECRET``, so the old and the new secret both work during a roll), in constant
   time; anything else is a 401 before a byte of the body is parsed or stored.
2. Replay protection: the timestamp that is signed is the body's ``createdAt``; an event more than
   :data:`MAX_EVENT_AGE` seconds old (or that far in the future) is not applied, and each event
   ``id`` is applied at most once (table ``coral_webhook_events``).
3. Answers 2xx to every authentic event, applied or not (an unknown ``type`` is ``ignored``):
   Coral does not retry a failed delivery but counts it, and disables an endpoint after 10
   failures in a row. Only a database failure is a 503.

The events used and how they link to this service's review queue
-----------------------------------------------------------------

Coral's webhook payloads carry ids only, never the comment's text, and its external moderation
phase (:mod:`.coral`, the one place this service sees the text) runs before the comment has an id.
The link is therefore made by **story and time**, from three events:

``STORY_CREATED`` ``data: {storyID, storyURL, siteID}``
    remembered as storyID -> story URL (table ``coral_webhook_stories``): the review queue knows a
    Coral comment's story by the URL the external phase sent (``story.url``).
``COMMENT_ENTERED_MODERATION_QUEUE`` ``data: {queue, commentID, status, storyID, siteID, section?}``
    with ``queue`` = ``PENDING`` and ``status`` = ``SYSTEM_WITHHELD`` (the status this service's
    phase gives a held comment; Coral's own pre-moderation gives PREMOD): Coral stored a comment
    this service held. It is linked (table ``coral_webhook_links``, commentID -> queue item) to
    the one pending queue item from source ``coral`` on that story URL, recorded in the last
    :data:`LINK_WINDOW` seconds and not yet linked. No such item, or several (two comments held on
    one story within the window): no link, and the comment's fate does not reach the feedback store
    (it stays in this service's queue for the console).
``COMMENT_LEFT_MODERATION_QUEUE`` ``data: {queue, commentID, status, storyID, siteID, section?}``
    with ``queue`` = ``PENDING`` and ``status`` = ``APPROVED`` or ``REJECTED`` (the comment's new
    status): a moderator decided. For a linked comment the decision goes through
    :meth:`modclf.queue.ReviewQueue.decide` (``decided_by`` = ``coral-webhook``), so the item leaves
    this service's queue and the feedback store gets it in the same transaction (feedback id
    ``queue:<item id>``, source ``queue/coral``): one record per comment whichever queue it was
    decided in. Label: approve of a comment predicted non-spam -> the predicted label; reject of a
    predicted ``spam`` -> ``spam``; reject of a predicted ``dispute`` -> ``dispute``. Anything else
    (approve of predicted spam, reject of a question/support/other) implies no label: the item
    stays pending here for a moderator to label in the console. A console decision that differs
    is kept (Coral's is not an override). Idempotent on the Coral comment id.

Not available from Coral's webhooks: the moderator's id (``COMMENT_STATUS_UPDATED`` has it but is
not a webhook event), and the story of a story created before the webhook was configured.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
from typing import Any, Sequence

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from ...errors import FeedbackError
from ...feedback import _short
from ...queue import DecisionConflict, LabelRequired, NotFound, ReviewQueue, feedback_label, queue_table
from ..body import OVERSIZE_KEY
from ..errors import APIError
from .coral import SIGNATURE_HEADER, verify_signature

log = logging.getLogger(__name__)

bp = Blueprint("modclf_coral_webhooks", __name__)

PATH = "/integrations/coral/webhooks"
EVENT_HEADER = "X-Coral-Event"
#: Seconds an event may be old (by its signed ``createdAt``) and still be applied.
MAX_EVENT_AGE = 300
#: Seconds between this service holding a comment and Coral reporting it in its pending queue.
LINK_WINDOW = 120
#: The source the external moderation phase records queue items with.
CORAL_SOURCE = "coral"
DECIDED_BY = "coral-webhook"

STORY_CREATED = "STORY_CREATED"
COMMENT_ENTERED_MODERATION_QUEUE = "COMMENT_ENTERED_MODERATION_QUEUE"
COMMENT_LEFT_MODERATION_QUEUE = "COMMENT_LEFT_MODERATION_QUEUE"
#: The events this endpoint uses (configure these in Coral); any other type is answered "ignored".
EVENTS = (STORY_CREATED, COMMENT_ENTERED_MODERATION_QUEUE, COMMENT_LEFT_MODERATION_QUEUE)
PENDING = "PENDING"
WITHHELD = "SYSTEM_WITHHELD"
DECISIONS = {"APPROVED": "approve", "REJECTED": "reject"}
MAX_ID = 128
MAX_URL = 2048

_metadata = MetaData()
events_table = Table(
    "coral_webhook_events", _metadata,
    Column("event_id", String(MAX_ID), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
stories_table = Table(
    "coral_webhook_stories", _metadata,
    Column("story_id", String(MAX_ID), primary_key=True),
    Column("story_url", String(MAX_URL), nullable=False),
    Column("site_id", String(MAX_ID), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
links_table = Table(
    "coral_webhook_links", _metadata,
    Column("comment_id", String(MAX_ID), primary_key=True),
    Column("item_id", Integer, nullable=False, unique=True),
    Column("story_id", String(MAX_ID), nullable=False),
    Column("linked_at", DateTime(timezone=True), nullable=False),
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)


def parse_created_at(value: object) -> _dt.datetime | None:
    """``createdAt`` as Coral serialises a Date (``2024-05-01T12:00:00.000Z``), or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class WebhookStore:
    """The webhook tables, in the feedback store's database. Thread-safe; safe across fork."""

    def __init__(self, queue: ReviewQueue):
        self.queue = queue
        self._lock = threading.Lock()
        self._ready: set[tuple[int, int]] = set()

    def engine(self) -> Engine:
        engine = self.queue.feedback.engine()
        self.queue.check()  # the review_queue table too: linking reads it
        key = (os.getpid(), id(engine))
        if key not in self._ready:
            with self._lock:
                if key not in self._ready:
                    for attempt in (1, 2):
                        try:
                            with engine.connect() as conn:
                                conn.execution_options(write=True)
                                with conn.begin():
                                    _metadata.create_all(conn)
                            break
                        except (OperationalError, ProgrammingError):
                            if attempt == 2:  # two workers racing to create: the second look settles it
                                raise
                    self._ready.add(key)
        return engine

    def seen(self, event_id: str) -> bool:
        t = events_table
        with self.engine().connect() as conn:
            return conn.execute(select(t.c.event_id).where(t.c.event_id == event_id)).first() is not None

    def mark(self, event_id: str, type_: str, outcome: str) -> None:
        try:
            with self.engine().connect() as conn:
                conn.execution_options(write=True)
                with conn.begin():
                    conn.execute(insert(events_table).values(event_id=event_id, type=type_[:64], outcome=outcome[:32],
                                                             received_at=_now()))
        except IntegrityError:
            pass  # the same event delivered twice at once: it was applied idempotently

    def remember_story(self, story_id: str, story_url: str, site_id: str | None) -> None:
        t = stories_table
        with self.engine().connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                if conn.execute(select(t.c.story_id).where(t.c.story_id == story_id)).first() is None:
                    conn.execute(insert(t).values(story_id=story_id, story_url=story_url, site_id=site_id,
                                                  created_at=_now()))
                else:
                    conn.execute(update(t).where(t.c.story_id == story_id).values(story_url=story_url))

    def link(self, comment_id: str, story_id: str) -> tuple[str, int | None]:
        """Link a Coral comment that entered the pending queue to the queue item it must be.
        Returns (outcome, item id)."""
        s, ln, q = stories_table, links_table, queue_table
        with self.engine().connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                existing = conn.execute(select(ln.c.item_id).where(ln.c.comment_id == comment_id)).first()
                if existing is not None:
                    return "already_linked", existing.item_id
                story = conn.execute(select(s.c.story_url).where(s.c.story_id == story_id)).first()
                if story is None:
                    return "unknown_story", None
                since = _now() - _dt.timedelta(seconds=LINK_WINDOW)
                linked = select(ln.c.item_id)
                candidates = conn.execute(
                    select(q.c.id).where(q.c.status == "pending", q.c.source == CORAL_SOURCE,
                                         q.c.story_url == story.story_url, q.c.created_at >= since,
                                         q.c.id.not_in(linked)).limit(2)).all()
                if not candidates:
                    return "no_candidate", None
                if len(candidates) > 1:
                    return "ambiguous", None
                item_id = candidates[0].id
                conn.execute(insert(ln).values(comment_id=comment_id, item_id=item_id, story_id=story_id,
                                               linked_at=_now()))
                return "linked", item_id

    def linked_item(self, comment_id: str) -> int | None:
        ln = links_table
        with self.engine().connect() as conn:
            row = conn.execute(select(ln.c.item_id).where(ln.c.comment_id == comment_id)).first()
        return row.item_id if row is not None else None


def _store() -> WebhookStore:
    store = current_app.extensions.get("modclf_coral_webhook_store")
    if store is None:
        store = WebhookStore(current_app.extensions["modclf_queue"])
        current_app.extensions["modclf_coral_webhook_store"] = store
    return store


def _text(data: dict[str, Any], key: str, limit: int = MAX_ID) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _parse_event(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise APIError(400, "invalid_json", "the body is not a JSON Coral event") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict):
        raise APIError(400, "invalid_body", "a Coral event is an object with id, type, data and createdAt")
    if _text(obj, "id") is None or _text(obj, "type", 64) is None:
        raise APIError(400, "invalid_body", "a Coral event needs a string id and type")
    return obj


def _decide(store: WebhookStore, comment_id: str, status: str) -> tuple[str, dict[str, Any]]:
    item_id = store.linked_item(comment_id)
    if item_id is None:
        return "not_linked", {}
    queue = store.queue
    item = queue.get(item_id)
    if item is None:
        return "not_found", {}
    action = DECISIONS[status]
    try:
        label = feedback_label(action, item.label, None)
    except LabelRequired:
        if action == "reject" and item.label == "dispute":
            label = "dispute"
        else:
            log.info("Coral comment %a %a: no label implied for a comment predicted %s; left in the queue",
                     comment_id, status, item.label)
            return "label_not_implied", {"item": item_id}
    try:
        outcome, decided = queue.decide(item_id, action, label, by=DECIDED_BY)
    except DecisionConflict as exc:
        log.info("Coral comment %a %a: item %d was decided otherwise in the console (%s, %s); kept",
                 comment_id, status, item_id, exc.current.decision, exc.current.decision_label)
        return "conflict", {"item": item_id}
    except NotFound:
        return "not_found", {}
    return ("applied" if outcome != "unchanged" else "unchanged"), {"item": item_id, "label": decided.decision_label}


def _handle(store: WebhookStore, type_: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if type_ == STORY_CREATED:
        story_id, url = _text(data, "storyID"), _text(data, "storyURL", MAX_URL)
        if story_id is None or url is None:
            return "ignored", {"reason": "missing storyID or storyURL"}
        store.remember_story(story_id, url, _text(data, "siteID"))
        return "applied", {}
    if type_ in (COMMENT_ENTERED_MODERATION_QUEUE, COMMENT_LEFT_MODERATION_QUEUE):
        comment_id, story_id = _text(data, "commentID"), _text(data, "storyID")
        if comment_id is None or story_id is None:
            return "ignored", {"reason": "missing commentID or storyID"}
        if data.get("queue") != PENDING:
            return "ignored", {"reason": "not the pending queue"}
        status = data.get("status")
        if type_ == COMMENT_ENTERED_MODERATION_QUEUE:
            if status != WITHHELD:
                return "ignored", {"reason": "not held by this service"}
            outcome, item_id = store.link(comment_id, story_id)
            if outcome not in ("linked", "already_linked"):
                log.info("Coral comment %a (story %a) not linked to a queue item: %s", comment_id, story_id, outcome)
            return ("applied" if outcome == "linked" else "ignored"), {"reason": outcome, "item": item_id}
        if status not in DECISIONS:
            return "ignored", {"reason": "not a moderator's approve or reject"}
        outcome, extra = _decide(store, comment_id, status)
        if outcome in ("applied", "unchanged"):
            return "applied", extra
        return "ignored", {"reason": outcome, **extra}
    return "ignored", {"reason": "event type not used"}


@bp.post(PATH)
def receive() -> Any:
    """One Coral webhook delivery: verify, then apply (at most once) or ignore; 2xx either way."""
    secrets: Sequence[str] = current_app.extensions["modclf_coral_webhook_secrets"]
    if request.environ.get(OVERSIZE_KEY):
        raise APIError(413, "payload_too_large", "request body too large", {"Connection": "close"})
    raw = request.get_data(cache=False)
    if not verify_signature(raw, request.headers.get(SIGNATURE_HEADER), secrets):
        log.warning("Coral webhook refused: %s missing or not signed by a configured webhook secret (from %s)",
                    SIGNATURE_HEADER, request.remote_addr)
        raise APIError(401, "invalid_signature", f"missing or invalid {SIGNATURE_HEADER}")
    event = _parse_event(raw)
    event_id, type_ = event["id"], event["type"]
    answer: dict[str, Any] = {"event": event_id, "type": type_}
    created = parse_created_at(event.get("createdAt"))
    if created is None or abs((_now() - created).total_seconds()) > MAX_EVENT_AGE:
        log.warning("Coral webhook %a (%a) not applied: createdAt %a missing or more than %ds away",
                    event_id, type_, event.get("createdAt"), MAX_EVENT_AGE)
        return jsonify({**answer, "status": "ignored", "reason": "stale"})
    if type_ not in EVENTS:
        return jsonify({**answer, "status": "ignored", "reason": "event type not used"})
    store = _store()
    try:
        if store.seen(event_id):
            return jsonify({**answer, "status": "duplicate"})
        status, extra = _handle(store, type_, event["data"])
        store.mark(event_id, type_, status if status != "ignored" else str(extra.get("reason", "ignored")))
    except (FeedbackError, SQLAlchemyError) as exc:
        log.error("Coral webhook %a (%a) not applied: database: %s", event_id, type_,
                  _short(exc) if isinstance(exc, SQLAlchemyError) else exc)
        raise APIError(503, "store_unavailable", "the feedback store is unavailable") from None
    return jsonify({**answer, "status": status, **{k: v for k, v in extra.items() if v is not None}})


def openapi_paths() -> dict[str, Any]:
    """This endpoint's OpenAPI path item (added to /openapi.json when it is installed)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    answer = {"type": "object", "required": ["event", "type", "status"], "properties": {
        "event": {"type": "string"}, "type": {"type": "string"},
        "status": {"type": "string", "enum": ["applied", "ignored", "duplicate"]},
        "reason": {"type": "string"}, "item": {"type": "integer"}, "label": {"type": "string"}}}
    return {PATH: {"post": {
        "tags": ["coral"], "operationId": "coralWebhook",
        "summary": "Coral webhook: moderators' approve/reject in Coral's queue -> feedback",
        "description": "Verifies `X-Coral-Signature` (HMAC-SHA256 of the raw body, `sha256=<hex>`, comma-separated "
                       "while a secret is rolled) against CORAL_WEBHOOK_SECRET. Uses STORY_CREATED, "
                       "COMMENT_ENTERED_MODERATION_QUEUE and COMMENT_LEFT_MODERATION_QUEUE; other events are "
                       f"acknowledged and ignored, as are events whose createdAt is more than {MAX_EVENT_AGE}s away.",
        "parameters": [{"name": SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
                        "description": "`sha256=<hex>[,sha256=<hex>...]`"},
                       {"name": EVENT_HEADER, "in": "header", "required": False, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["id", "type", "data", "createdAt"],
            "properties": {"id": {"type": "string"}, "type": {"type": "string"}, "data": {"type": "object"},
                           "createdAt": {"type": "string", "format": "date-time"},
                           "tenantID": {"type": "string"}, "tenantDomain": {"type": "string"}}}}}},
        "responses": {
            "200": {"description": "Authentic event: applied, ignored (with a reason) or a duplicate.",
                    "content": {"application/json": {"schema": answer}}},
            "400": {"description": "Signed, but not a JSON Coral event.", "content": dict(error)},
            "401": {"description": "Missing signature or none made with a configured secret.", "content": dict(error)},
            "503": {"description": "The feedback store is unavailable; nothing was applied.", "content": dict(error)},
        }}}}


__all__ = ["bp", "openapi_paths", "PATH", "EVENTS", "MAX_EVENT_AGE", "LINK_WINDOW", "WebhookStore", "parse_created_at"]
