"""OpenAPI 3.0 paths of the integrations (Coral, Akismet), added to the document served at
/openapi.json when they are installed. Every /v1/ path is in modclf/serving/openapi.json."""

from __future__ import annotations

import copy
from typing import Any


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": copy.deepcopy(_ERROR)}


_DEFAULT = _error("Any other error (404 unknown path, 405 wrong method, 413 body too large, 500 internal error), same shape.")

SCHEMAS: dict[str, Any] = {
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
            "comment_post_modified_gmt", "blog_lang", "blog_charset", "user_role", "is_test", "recheck_reason",
            "honeypot_field_name", "comment_context")},
    },
    "AkismetVerifyForm": {
        "type": "object", "required": ["blog"],
        "description": "The key as `api_key` (Akismet's current documentation) or `key` (older clients).",
        "properties": {"api_key": {"type": "string"}, "key": {"type": "string"}, "blog": {"type": "string"}},
    },
}


def _form_body(schema: str) -> dict[str, Any]:
    ref = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return {"required": True, "content": {"application/x-www-form-urlencoded": ref,
                                          "multipart/form-data": copy.deepcopy(ref)}}


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
            "400": _error("The body could not be read (malformed framing or multipart)."),
            "413": _error("Body above the request cap, or more than 1000 fields."),
            "415": _error("Not form-encoded."),
            "503": _error("The feedback store is unavailable; nothing was stored, retry."),
            "default": copy.deepcopy(_DEFAULT),
        }}}


def paths(*, coral: bool, akismet: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
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
                "200": {"description": "Hold or reject the comment. A signed body above the request cap is "
                                       "answered `{\"status\": \"SYSTEM_WITHHELD\"}` unread (fail closed).",
                        "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CoralModerationResponse"}}}},
                "204": {"description": "No action: the policy approves the comment (or its body is empty)."},
                "400": _error("Malformed request body (JSON, UTF-8, framing)."),
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
                "200": _text(f"`true` (spam; with `X-akismet-pro-tip: discard` when the policy rejects it) or `false`; {_AKISMET_INVALID}. "
                             "A comment the policy holds for being longer than the model's window, or a body above the request cap "
                             "(with `X-modclf-reason`), is `true`: fail closed.",
                             ["true", "false", "invalid", "Missing required field: user_ip."]),
                "400": _error("The body could not be read (malformed framing or multipart)."),
                "415": _error("Not form-encoded."),
                "default": copy.deepcopy(_DEFAULT)}}}
        out["/akismet/1.1/submit-spam"] = _akismet_submit("spam")
        out["/akismet/1.1/submit-ham"] = _akismet_submit("ham")
    return out


def add_paths(doc: dict[str, Any], *, coral: bool, akismet: bool) -> None:
    """Add the installed integrations' paths and schemas."""
    doc.setdefault("paths", {}).update(paths(coral=coral, akismet=akismet))
    doc.setdefault("components", {}).setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
