"""OpenAPI 3.0 paths of the integrations, added to the document served at /openapi.json."""

from __future__ import annotations

import copy
from typing import Any

from ..feedback import MAX_ID_CHARS, MAX_SOURCE_CHARS
from ..labels import LABELS

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": copy.deepcopy(_ERROR)}


_DEFAULT = _error("Any other error (404 unknown path, 405 wrong method, 413 body too large, 500 internal error), same shape.")

SCHEMAS: dict[str, Any] = {
    "FeedbackRequest": {
        "type": "object", "additionalProperties": False, "required": ["id", "text", "label"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": r"\S",
                   "description": "The comment's id in the comment platform; one decision per id."},
            "text": {"$ref": "#/components/schemas/CommentText"},
            "label": {"type": "string", "enum": list(LABELS), "description": "The moderator's label."},
            "source": {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_CHARS, "pattern": r"\S",
                       "description": "Who decided (platform, moderator); default `api`."},
        },
    },
    "FeedbackResult": {
        "type": "object", "additionalProperties": False, "required": ["id", "label", "status"],
        "properties": {
            "id": {"type": "string"},
            "label": {"type": "string", "enum": list(LABELS)},
            "status": {"type": "string", "enum": ["created", "updated", "unchanged"],
                       "description": "created (201); unchanged: the same decision was already stored (200); "
                                      "updated: another decision for this id replaced the stored one, which is kept in the history (200)."},
        },
    },
    "CoralModerationRequest": {
        "type": "object", "required": ["comment"],
        "description": "Coral's External Moderation Request (fields Coral adds are accepted).",
        "properties": {
            "action": {"type": "string", "enum": ["NEW", "EDIT"]},
            "comment": {"type": "object", "required": ["body"], "properties": {
                "body": {"type": "string"}, "parentID": {"type": "string", "nullable": True}}},
            "author": {"type": "object", "properties": {"id": {"type": "string"}, "role": {"type": "string"}}},
            "story": {"type": "object", "properties": {"id": {"type": "string"}, "url": {"type": "string"}}},
            "site": {"type": "object", "properties": {"id": {"type": "string"}}},
            "tenantID": {"type": "string"},
            "tenantDomain": {"type": "string"},
        },
    },
    "CoralModerationResponse": {
        "type": "object", "additionalProperties": False, "required": ["status"],
        "description": "Coral's External Moderation Response.",
        "properties": {
            "status": {"type": "string", "enum": ["REJECTED", "SYSTEM_WITHHELD"]},
            "actions": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["actionType", "reason"],
                "properties": {"actionType": {"type": "string", "enum": ["FLAG"]},
                               "reason": {"type": "string", "enum": ["COMMENT_DETECTED_SPAM", "COMMENT_DETECTED_TOXIC"]}}}},
        },
    },
    "AkismetCommentForm": {
        "type": "object", "required": ["api_key", "blog", "user_ip"],
        "properties": {name: {"type": "string"} for name in (
            "api_key", "blog", "user_ip", "user_agent", "referrer", "permalink", "comment_type", "comment_author",
            "comment_author_email", "comment_author_url", "comment_content", "comment_date_gmt",
            "comment_post_modified_gmt", "blog_lang", "blog_charset", "user_role", "is_test", "recheck_reason")},
    },
    "AkismetVerifyForm": {
        "type": "object", "required": ["key", "blog"],
        "properties": {"key": {"type": "string"}, "blog": {"type": "string"}},
    },
}


def _form_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _text(description: str, values: list[str]) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string", "enum": values}}}}


_AKISMET_INVALID = "`invalid` (with `X-akismet-debug-help`) for a missing or unknown key or a blog that is not an http(s) URL; `Missing required field: user_ip.` without user_ip"


def _akismet_submit(label: str) -> dict[str, Any]:
    return {"post": {
        "tags": ["akismet"], "operationId": f"akismetSubmit{label.capitalize()}",
        "summary": f"Akismet submit-{label}: record a moderator's '{label}' decision in the feedback store",
        "requestBody": _form_body("AkismetCommentForm"),
        "responses": {
            "200": _text(f"`Thanks for making the web a better place.` once the decision is stored (not stored with is_test); {_AKISMET_INVALID}; "
                         "`Missing required field: comment_content.` without text.",
                         ["Thanks for making the web a better place.", "invalid", "Missing required field: user_ip.",
                          "Missing required field: comment_content."]),
            "400": _error("comment_content longer than the configured maximum."),
            "415": _error("Not form-encoded."),
            "503": _error("The feedback store is unavailable; nothing was stored, retry."),
            "default": copy.deepcopy(_DEFAULT),
        }}}


def paths(*, coral: bool, akismet: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "/v1/feedback": {"post": {
            "tags": ["feedback"], "operationId": "recordFeedback",
            "summary": "Record a moderator's decision (idempotent on id; stored durably before the answer)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/FeedbackRequest"}}}},
            "responses": {
                "201": {"description": "Stored.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackResult"}}}},
                "200": {"description": "Already stored (unchanged) or replaced (updated).",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackResult"}}}},
                "400": _error("Invalid input: malformed JSON, unknown or missing field, empty id, text or source, text too long, unknown label."),
                "401": _error("API keys are enabled and the request has no valid `Authorization: Bearer <key>`."),
                "415": _error("Content-Type is not application/json (UTF-8)."),
                "503": _error("The feedback store is unavailable; nothing was stored, retry."),
                "default": copy.deepcopy(_DEFAULT),
            }}},
        "/v1/feedback/export": {"get": {
            "tags": ["feedback"], "operationId": "exportFeedback",
            "summary": "Every stored decision as CSV (id,text,label,source,created_at,updated_at), streamed",
            "responses": {
                "200": {"description": "CSV with a header row; label is one of the labels or `ham` (Akismet submit-ham: not spam).",
                        "content": {"text/csv": {"schema": {"type": "string"}}}},
                "400": _error("Unknown query parameter."),
                "401": _error("API keys are enabled and the request has no valid `Authorization: Bearer <key>`."),
                "503": _error("The feedback store is unavailable."),
                "default": copy.deepcopy(_DEFAULT),
            }}},
    }
    if coral:
        out["/integrations/coral"] = {"post": {
            "tags": ["coral"], "operationId": "coralExternalModeration",
            "summary": "Coral external moderation phase",
            "description": "Verifies `X-Coral-Signature` (HMAC-SHA256 of the raw body, `sha256=<hex>`, comma-separated while rotating) "
                           "against CORAL_SIGNING_SECRET, classifies `comment.body` and answers with Coral's statuses and flag reasons.",
            "parameters": [{"name": "X-Coral-Signature", "in": "header", "required": True,
                            "schema": {"type": "string"}, "description": "`sha256=<hex>[,sha256=<hex>...]`"}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/CoralModerationRequest"}}}},
            "responses": {
                "200": {"description": "Hold or reject the comment.", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CoralModerationResponse"}}}},
                "204": {"description": "No action: the policy approves the comment (or its body is empty)."},
                "400": _error("Malformed request body, or comment.body longer than the configured maximum."),
                "401": _error("Missing signature or no signature made with a configured secret."),
                "415": _error("Content-Type is not application/json."),
                "default": copy.deepcopy(_DEFAULT),
            }}}
    if akismet:
        out["/akismet/1.1/verify-key"] = {"post": {
            "tags": ["akismet"], "operationId": "akismetVerifyKey", "summary": "Akismet verify-key",
            "requestBody": _form_body("AkismetVerifyForm"),
            "responses": {"200": _text("`valid`, or `invalid` with `X-akismet-debug-help`.", ["valid", "invalid"]),
                          "415": _error("Not form-encoded."), "default": copy.deepcopy(_DEFAULT)}}}
        out["/akismet/1.1/comment-check"] = {"post": {
            "tags": ["akismet"], "operationId": "akismetCommentCheck", "summary": "Akismet comment-check",
            "requestBody": _form_body("AkismetCommentForm"),
            "responses": {
                "200": _text(f"`true` (spam; with `X-akismet-pro-tip: discard` when the policy rejects it) or `false`; {_AKISMET_INVALID}.",
                             ["true", "false", "invalid", "Missing required field: user_ip."]),
                "400": _error("comment_content longer than the configured maximum."),
                "415": _error("Not form-encoded."),
                "default": copy.deepcopy(_DEFAULT)}}}
        out["/akismet/1.1/submit-spam"] = _akismet_submit("spam")
        out["/akismet/1.1/submit-ham"] = _akismet_submit("ham")
    return out


def add_paths(doc: dict[str, Any], *, coral: bool, akismet: bool, bearer: bool) -> None:
    """Add the installed integrations' paths and schemas (with Bearer security on /v1/ paths when on)."""
    new = paths(coral=coral, akismet=akismet)
    if bearer:
        for path, item in new.items():
            if path.startswith("/v1/"):
                for operation in item.values():
                    operation["security"] = [{"bearerAuth": []}]
    doc.setdefault("paths", {}).update(new)
    doc.setdefault("components", {}).setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
