"""The feedback endpoints: moderators' decisions in, the stored decisions out as CSV.

- ``POST /v1/feedback`` ``{"id", "text", "label", "source"?}`` -> 201 created / 200 unchanged or
  updated, answered only after the decision is committed (:class:`modclf.feedback.FeedbackStore`);
  ids and sources in the namespaces the service writes itself (:data:`RESERVED_ID_PREFIXES`,
  :data:`RESERVED_SOURCE_PREFIXES`: the review queue's ``queue:<n>`` / ``queue/...`` decisions,
  which include Coral webhook decisions, and Akismet's ``akismet:<digest>`` / ``akismet/...``
  submissions) are refused with 403 ``reserved_id`` / ``reserved_source`` for every key, so a
  client can neither overwrite a moderator's decision nor pass its own rows off as one;
- ``GET /v1/feedback/export`` -> every stored decision as CSV (``id,text,label,source,created_at,
  updated_at``, spreadsheet-safe cells), streamed in batches so a large store needs no more memory
  than a small one.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import Any, Iterator

from flask import Blueprint, Response, current_app, jsonify

from ..errors import FeedbackError
from ..feedback import MAX_SOURCE_CHARS, Decision, FeedbackStore, Outcome, iter_csv
from ..labels import LABELS
from ..queue import FEEDBACK_ID_PREFIX as QUEUE_ID_PREFIX
from ..queue import FEEDBACK_SOURCE_PREFIX as QUEUE_SOURCE_PREFIX
from .errors import APIError
from .validation import check_id, check_query, check_text, read_json_object, without_surrogates

log = logging.getLogger(__name__)

bp = Blueprint("modclf_feedback", __name__)

#: Ids of the feedback rows Akismet's submit-spam / submit-ham write
#: (:func:`modclf.serving.integrations.akismet.submission_id`).
AKISMET_ID_PREFIX = "akismet:"
#: Sources of those rows (``akismet/submit-spam <blog>``).
AKISMET_SOURCE_PREFIX = "akismet/"
#: Feedback ids only the part of the service that owns them writes: the review queue
#: (``queue:<item id>``: console, ``/v1/queue/{id}/decision``, Coral webhooks) and Akismet
#: submissions. ``POST /v1/feedback`` refuses them for every key (403 ``reserved_id``).
RESERVED_ID_PREFIXES: tuple[str, ...] = (QUEUE_ID_PREFIX, AKISMET_ID_PREFIX)
#: Sources only those parts write (``queue/<source>``, ``akismet/<endpoint> <blog>``): refused too
#: (403 ``reserved_source``), so a row sent here can never pass for a moderator's decision.
RESERVED_SOURCE_PREFIXES: tuple[str, ...] = (QUEUE_SOURCE_PREFIX, AKISMET_SOURCE_PREFIX)


def _fold(value: str) -> str:
    """How a reserved prefix is recognized: compatibility-normalized, leading white space and
    format characters dropped, case-folded (so "Queue:1", " queue:1" and a full-width "ｑueue:1" are
    refused too: they would not overwrite ``queue:1``, but would read as the queue's rows)."""
    folded = unicodedata.normalize("NFKC", value)
    folded = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    return folded.lstrip().casefold()


def reserved_prefix(value: str, prefixes: tuple[str, ...]) -> str | None:
    """The reserved prefix ``value`` starts with, or None."""
    folded = _fold(value)
    return next((p for p in prefixes if folded.startswith(p)), None)


def get_store() -> FeedbackStore:
    return current_app.extensions["modclf_feedback"]


def record_or_503(store: FeedbackStore, id: str, text: str, label: str, source: str) -> Outcome:
    """Record, turning a database failure into 503 (the client should retry; nothing was acknowledged)."""
    try:
        return store.record(id, text, label, source)
    except FeedbackError as exc:
        log.error("feedback not stored (id %r): %s", id, exc)
        raise APIError(503, "feedback_unavailable", "the feedback store is unavailable; the decision was "
                       "not stored, retry later", {"Retry-After": "5"}) from None


@bp.post("/v1/feedback")
def post_feedback() -> Any:
    """Record a moderator's decision; answered only after it is committed."""
    check_query(())
    body = read_json_object({"id", "text", "label", "source"}, {"id", "text", "label"})
    comment_id = check_id(body["id"], "id")
    if not comment_id.strip():
        raise APIError(400, "invalid_id", "id is empty")
    text = check_text(body["text"], "text")
    label = body["label"]
    if not isinstance(label, str) or label not in LABELS:
        raise APIError(400, "invalid_label", f"label must be one of {', '.join(LABELS)}")
    source = body.get("source", "api")
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS:
        raise APIError(400, "invalid_source", f"source must be a non-empty string of at most {MAX_SOURCE_CHARS} characters")
    prefix = reserved_prefix(comment_id, RESERVED_ID_PREFIXES)
    if prefix is not None:
        raise APIError(403, "reserved_id", f"ids starting with {prefix!r} are written only by the service itself "
                       "(review queue decisions, Akismet submissions); use another id")
    prefix = reserved_prefix(source, RESERVED_SOURCE_PREFIXES)
    if prefix is not None:
        raise APIError(403, "reserved_source", f"sources starting with {prefix!r} are written only by the service "
                       "itself (review queue decisions, Akismet submissions); use another source")
    outcome = record_or_503(get_store(), comment_id, text, label, without_surrogates(source))
    response = jsonify({"id": comment_id, "label": label, "status": outcome})
    response.status_code = 201 if outcome == "created" else 200
    return response


@bp.get("/v1/feedback/export")
def export_feedback() -> Any:
    """Stream every decision as CSV. A failure after the first byte aborts the connection, so a
    client never mistakes a truncated export for a complete one (the chunked body has no end)."""
    check_query(())
    rows = get_store().iter_decisions()
    try:
        first = next(rows, None)  # fail as a clean 503 while no byte has been sent
    except FeedbackError as exc:
        log.error("feedback export failed: %s", exc)
        raise APIError(503, "feedback_unavailable", "the feedback store is unavailable, retry later",
                       {"Retry-After": "5"}) from None

    def decisions() -> Iterator[Decision]:
        if first is not None:
            yield first
        yield from rows

    def generate() -> Iterator[str]:
        try:
            yield from iter_csv(decisions())
        except FeedbackError as exc:
            log.error("feedback export aborted: %s", exc)
            raise

    return Response(generate(), status=200, content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="feedback.csv"',
                             "Cache-Control": "no-store"})
