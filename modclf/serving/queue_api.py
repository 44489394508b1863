"""The review queue endpoints (admin key when keys are configured; see :mod:`modclf.queue`).

- ``GET /v1/queue?order=oldest|uncertain&label=&source=&limit=&cursor=|offset=`` -> the pending
  items (``{"pending", "count", "items", "next_cursor"}``); ``pending`` counts every pending item
  matching the filters, ``next_cursor`` continues after the last item of this page (stable while
  other moderators decide items, unlike ``offset``). An item's ``text`` is what the model read: the
  comment, or for one longer than the model's window its bounded window (head, link stretches,
  tail, joined by ``"\n...\n"``), with ``omitted_chars`` the characters left out (0 when whole),
  so a page is at most ``limit`` x the window whatever was queued.
- ``POST /v1/queue/{id}/decision`` ``{"action": "approve"|"reject", "label"?, "override"?}`` ->
  the decision, written into the feedback store in the same transaction (``status``: ``decided``,
  ``unchanged`` for a repeat, ``updated`` for an override); 409 for a different second decision
  without ``override``; 400 ``label_required`` when the action does not imply a label (approve of
  a predicted spam, reject of a predicted non-spam comment).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..errors import FeedbackError
from ..labels import LABELS
from ..queue import (ACTIONS, FEEDBACK_ID_PREFIX, MAX_SOURCE_CHARS, ORDERS, DecisionConflict, Item, LabelRequired,
                     NotFound, ReviewQueue)
from .errors import APIError
from .validation import check_query, read_json_object

log = logging.getLogger(__name__)

bp = Blueprint("modclf_queue", __name__)

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_OFFSET = 100_000
#: largest id a queue item can have (a 32-bit integer column on PostgreSQL)
MAX_ITEM_ID = 2**31 - 1


def get_queue() -> ReviewQueue:
    return current_app.extensions["modclf_queue"]


def unavailable(exc: FeedbackError, what: str) -> APIError:
    log.error("review queue: %s failed: %s", what, exc)
    return APIError(503, "queue_unavailable", "the review queue is unavailable, retry later", {"Retry-After": "5"})


def _one_arg(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise APIError(400, "invalid_query", f"query parameter {name!r} given more than once")
    return values[0] if values else None


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = _one_arg(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9 or not low <= int(value) <= high:
        raise APIError(400, "invalid_query", f"query parameter {name!r} must be an integer from {low} to {high}")
    return int(value)


def list_pending(queue: ReviewQueue) -> dict[str, Any]:
    """The GET /v1/queue answer for the current request's query (also used by the console)."""
    check_query({"order", "label", "source", "limit", "cursor", "offset"})
    order = _one_arg("order")
    order = "oldest" if order is None else order
    if order not in ORDERS:
        raise APIError(400, "invalid_query", f"order must be one of {', '.join(ORDERS)}")
    label = _one_arg("label")
    if label is not None and label not in LABELS:
        raise APIError(400, "invalid_query", f"label must be one of {', '.join(LABELS)}")
    source = _one_arg("source")
    if source is not None and not 1 <= len(source) <= MAX_SOURCE_CHARS:
        raise APIError(400, "invalid_query", f"source must have 1 to {MAX_SOURCE_CHARS} characters")
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    cursor = _one_arg("cursor")
    if cursor is not None and "offset" in request.args:
        raise APIError(400, "invalid_query", "give cursor or offset, not both")
    window_chars = current_app.extensions["modclf"].window_chars  # texts as the model read them: bounded
    try:
        page = queue.pending(order=order, label=label, source=source, limit=limit, cursor=cursor, offset=offset)
    except ValueError as exc:
        raise APIError(400, "invalid_cursor", f"cursor: {exc}") from None
    except FeedbackError as exc:
        raise unavailable(exc, "listing") from None
    return {"pending": page.pending, "count": len(page.items), "items": [i.as_dict(window_chars) for i in page.items],
            "next_cursor": page.next_cursor}


def decide(queue: ReviewQueue, item_id: int, action: object, label: object, override: bool, by: str) -> dict[str, Any]:
    """Validate and record one decision; the JSON answer. Raises APIError (400/404/409/503)."""
    if not isinstance(action, str) or action not in ACTIONS:
        raise APIError(400, "invalid_action", f"action must be one of {', '.join(ACTIONS)}")
    if label is not None and (not isinstance(label, str) or label not in LABELS):
        raise APIError(400, "invalid_label", f"label must be one of {', '.join(LABELS)}")
    if not 1 <= item_id <= MAX_ITEM_ID:
        raise APIError(404, "queue_item_not_found", f"no queue item {item_id}")
    try:
        status, item = queue.decide(item_id, action, label, override=override, by=by)  # type: ignore[arg-type]
    except NotFound:
        raise APIError(404, "queue_item_not_found", f"no queue item {item_id}") from None
    except LabelRequired as exc:
        raise APIError(400, "label_required", str(exc)) from None
    except DecisionConflict as exc:
        raise APIError(409, "decision_conflict", str(exc)) from None
    except FeedbackError as exc:
        raise unavailable(exc, f"decision on item {item_id}") from None
    return decision_answer(status, item)


def decision_answer(status: str, item: Item) -> dict[str, Any]:
    return {"id": item.id, "status": status, "action": item.decision, "label": item.decision_label,
            "predicted_label": item.label, "feedback_id": f"{FEEDBACK_ID_PREFIX}{item.id}"}


@bp.get("/v1/queue")
def get_pending() -> Any:
    return jsonify(list_pending(get_queue()))


@bp.post("/v1/queue/<int:item_id>/decision")
def post_decision(item_id: int) -> Any:
    check_query(())
    body = read_json_object({"action", "label", "override"}, {"action"})
    override = body.get("override", False)
    if not isinstance(override, bool):
        raise APIError(400, "invalid_type", "override must be true or false")
    return jsonify(decide(get_queue(), item_id, body["action"], body.get("label"), override, "api"))


__all__ = ["bp", "get_queue", "list_pending", "decide"]
