"""Coral (The Coral Project) external moderation phase: ``POST /integrations/coral``.

Contract (Coral's "External Moderation Phases" guide, request signing as in its "Webhooks" guide):

- Coral POSTs an External Moderation Request (JSON: ``action`` NEW|EDIT, ``comment.body``,
  ``comment.parentID``, ``author``, ``story``, ``site``, tenant fields) with the header
  ``X-Coral-Signature: sha256=<hex>[,sha256=<hex>...]``: one HMAC-SHA256 of the raw body per active
  signing secret (several while a secret is being rotated).
- We verify the raw body against every secret in ``CORAL_SIGNING_SECRET`` (comma-separated, so old
  and new secret both work during a rotation), in constant time; a missing or wrong signature is
  answered 401 before the body is parsed, classified, logged or stored.
- The answer is 204 without a body (no action) or 200 with an External Moderation Response:
  ``{"status": ..., "actions": [{"actionType": "FLAG", "reason": ...}]}`` using only the statuses
  (NONE, APPROVED, REJECTED, PREMOD, SYSTEM_WITHHELD) and flag reasons (COMMENT_DETECTED_TOXIC,
  COMMENT_DETECTED_SPAM) Coral documents.

Mapping (policy action -> Coral), also in README "Integrations":

=========  ======================================  ==================================================
action     Coral status                            flags
=========  ======================================  ==================================================
approve    (204, no action: Coral's own settings)  none
review     SYSTEM_WITHHELD (Coral's pending queue) SPAM if spam signal, TOXIC if dispute signal
reject     REJECTED                                SPAM if spam signal, TOXIC if dispute signal
=========  ======================================  ==================================================

``review`` uses SYSTEM_WITHHELD, the status Coral's own spam and toxicity phases give a comment they
hold for a moderator; PREMOD is Coral's pre-moderation setting, not a machine's decision. Approval
is 204 rather than APPROVED because APPROVED marks a comment as approved by a moderator.

Nothing from a Coral request is written to the feedback store: a request carries the model's
opinion, not a moderator's decision.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Mapping, Sequence

from flask import Blueprint, Response, current_app, jsonify, request

from ...policy import Policy
from ..body import OVERSIZE_KEY, PREFIX_KEY, BodyTimeout, deadline, read_chunks
from ..errors import APIError
from ..state import ServiceState
from ..validation import without_surrogates
from . import dispute_signal, plain_text, spam_signal

log = logging.getLogger(__name__)

bp = Blueprint("modclf_coral", __name__)


def _register_verdict_path(state: Any) -> None:
    """The Coral phase gives a fail-closed verdict for an over-cap body instead of a 413."""
    paths = state.app.extensions.get("modclf_verdict_paths")
    if paths is not None:
        paths.add(PATH)


bp.record_once(_register_verdict_path)

PATH = "/integrations/coral"
SIGNATURE_HEADER = "X-Coral-Signature"
FLAG = "FLAG"
REASON_SPAM = "COMMENT_DETECTED_SPAM"
REASON_TOXIC = "COMMENT_DETECTED_TOXIC"
STATUS_REJECTED = "REJECTED"
STATUS_WITHHELD = "SYSTEM_WITHHELD"
ACTIONS = ("NEW", "EDIT")
#: More signatures than this in one header is not a rotation; the rest are ignored (bounded work).
MAX_SIGNATURES = 16


def parse_signatures(header: str) -> list[str]:
    """Coral's step 1: split on ``,``, split each element on ``=``, keep the values of ``sha256``."""
    values = []
    for element in header.split(","):
        prefix, sep, value = element.strip().partition("=")
        if sep and prefix == "sha256" and value:
            values.append(value.strip())
    return values[:MAX_SIGNATURES]


def sign(secret: str, body: bytes) -> str:
    """Coral's step 3: hex HMAC-SHA256 of the raw body with the signing secret as key."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True when any signature in the header matches the body under any configured secret.

    Every pair is compared with :func:`hmac.compare_digest` and without early exit, so the time
    taken says nothing about which signature or secret came close.
    """
    if not header or not secrets:
        return False
    return _any_match(header, [sign(s, body) for s in secrets])


def _any_match(header: str, digests: Sequence[str]) -> bool:
    """Constant-time: any signature of the header equals any of the hex ``digests``."""
    expected = [d.encode("ascii") for d in digests]
    ok = False
    for signature in parse_signatures(header):
        candidate = signature.encode("utf-8", "replace")
        for digest in expected:
            ok |= hmac.compare_digest(candidate, digest)
    return ok


def coral_response(result: Mapping[str, Any], policy: Policy) -> dict[str, Any] | None:
    """The External Moderation Response for one prediction, or None for "no action" (204)."""
    action = result["action"]
    if action == "approve":
        return None
    reasons = [reason for reason, fired in ((REASON_SPAM, spam_signal(result, policy)),
                                            (REASON_TOXIC, dispute_signal(result, policy))) if fired]
    response: dict[str, Any] = {"status": STATUS_REJECTED if action == "reject" else STATUS_WITHHELD}
    if reasons:
        response["actions"] = [{"actionType": FLAG, "reason": reason} for reason in reasons]
    return response


def verify_streamed(prefix: bytes, rest: Any, header: str | None, secrets: Sequence[str], limit: int,
                    timeout: float) -> bool | None:
    """:func:`verify_signature` for a body too large to keep: HMACs are fed chunk by chunk.

    None when the body goes past ``limit`` bytes in all (not even Coral sends that much).
    """
    if not header or not secrets:
        return False
    macs = [hmac.new(s.encode("utf-8"), digestmod=hashlib.sha256) for s in secrets]
    total = len(prefix)
    for mac in macs:
        mac.update(prefix)
    try:
        with deadline(timeout):
            for chunk in read_chunks(rest, limit - total):
                total += len(chunk)
                for mac in macs:
                    mac.update(chunk)
    except BodyTimeout:
        raise APIError(408, "request_timeout", "the request body was not received in time") from None
    except Exception:
        raise APIError(400, "malformed_body", "the request body could not be read") from None
    if total > limit:
        return None
    return _any_match(header, [mac.hexdigest() for mac in macs])


#: An over-cap body is hashed as it streams in, up to this many bytes; beyond it, 413.
MAX_STREAMED_BYTES = 64 << 20


def _oversize_verdict(secrets: Sequence[str]) -> Response:
    """Fail closed on a body above the request cap: Coral acts only on a 2xx answer with a body
    (any other status, and 204, mean "no opinion" and the comment is published), so a signed
    over-cap request gets 200 SYSTEM_WITHHELD: held for a moderator, unread by the model."""
    cfg = current_app.config["MODCLF"]
    verified = verify_streamed(request.environ.get(PREFIX_KEY, b""), request.environ["wsgi.input"],
                               request.headers.get(SIGNATURE_HEADER), secrets, MAX_STREAMED_BYTES, cfg.body_timeout)
    if verified is None:
        raise APIError(413, "payload_too_large", f"request body larger than {MAX_STREAMED_BYTES} bytes")
    if not verified:
        log.warning("Coral request refused: %s missing or not signed by a configured secret (from %s)",
                    SIGNATURE_HEADER, request.remote_addr)
        raise APIError(401, "invalid_signature", f"missing or invalid {SIGNATURE_HEADER}")
    log.warning("Coral request above the %d-byte cap: held for review without classification", cfg.max_body_bytes)
    return jsonify({"status": STATUS_WITHHELD})


def _parse_request(raw: bytes) -> tuple[str, str | None]:
    """The comment body of an External Moderation Request (other fields are checked, not needed).

    Unknown fields are accepted: Coral adds fields across versions (``tenant`` vs ``tenantID``),
    and refusing them would silently switch the phase off after a Coral upgrade.
    """
    if request.mimetype != "application/json":
        raise APIError(415, "unsupported_media_type", f"Content-Type must be application/json (got {request.mimetype or 'none'})")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise APIError(400, "invalid_utf8", f"request body is not valid UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise APIError(400, "invalid_json", "malformed JSON: nested too deeply") from None
    except ValueError as exc:
        raise APIError(400, "invalid_json", f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise APIError(400, "invalid_body", "the body must be a Coral External Moderation Request (a JSON object)")
    action = obj.get("action")
    if action is not None and action not in ACTIONS:
        raise APIError(400, "invalid_action", f"action must be one of {', '.join(ACTIONS)}")
    comment = obj.get("comment")
    if not isinstance(comment, dict):
        raise APIError(400, "missing_field", "comment: missing or not an object")
    body = comment.get("body")
    if not isinstance(body, str):
        raise APIError(400, "missing_field" if body is None else "invalid_type", "comment.body must be a string")
    story = obj.get("story")
    story_url = story.get("url") if isinstance(story, dict) else None
    return without_surrogates(body), without_surrogates(story_url) if isinstance(story_url, str) else None


@bp.post(PATH)
def moderate() -> Any:
    """Coral's external moderation phase: verify, classify, answer with Coral's vocabulary."""
    secrets: Sequence[str] = current_app.extensions["modclf_coral_secrets"]
    if request.environ.get(OVERSIZE_KEY):
        return _oversize_verdict(secrets)
    raw = request.get_data(cache=False)  # read and size-checked by modclf.serving.body
    if not verify_signature(raw, request.headers.get(SIGNATURE_HEADER), secrets):
        # Nothing of the body is parsed, logged or stored: it is not known to come from Coral.
        log.warning("Coral request refused: %s missing or not signed by a configured secret "
                    "(from %s)", SIGNATURE_HEADER, request.remote_addr)
        raise APIError(401, "invalid_signature", f"missing or invalid {SIGNATURE_HEADER}")
    body, story_url = _parse_request(raw)
    text = plain_text(body)
    if not text.strip():
        return Response(status=204)  # nothing to judge: leave the comment to Coral's own settings
    state: ServiceState = current_app.extensions["modclf"]
    moderator = state.moderator  # one snapshot: its model and its policy decide together
    result = state.classify([text], moderator=moderator, source="coral", story_url=story_url)[0]
    policy = moderator.policy
    response = coral_response(result, policy)
    if response is None:
        return Response(status=204)
    return jsonify(response)
