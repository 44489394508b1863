"""Strict request parsing: the only way request bodies and query strings enter the service.

Everything a client can get wrong is turned into an :class:`~modclf.serving.errors.APIError`
(4xx) here, before any model code runs, so the classifier only ever sees well-formed text.
Integration blueprints should use :func:`read_json_object` too, to answer bad input the same way.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from flask import request

from .. import strictjson
from ..moderator import clean_text
from .errors import APIError

MAX_ID_CHARS = 256
_JSON_TYPES = ("application/json",)


def read_json_object(allowed: Iterable[str], required: Iterable[str] = (), *, optional_body: bool = False) -> dict[str, Any]:
    """Parse the request body as one UTF-8 JSON object with only ``allowed`` keys.

    Raises 415 (content type), 400 (UTF-8, JSON,
    shape, unknown or missing fields). With ``optional_body`` an empty body is ``{}``.
    """
    if optional_body and not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    if request.mimetype not in _JSON_TYPES:
        got = request.mimetype or "none"
        raise APIError(415, "unsupported_media_type", f"Content-Type must be application/json (got {got})")
    charset = request.mimetype_params.get("charset")
    if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise APIError(415, "unsupported_media_type", f"only UTF-8 JSON is accepted (got charset={charset})")
    raw = request.get_data(cache=False)  # already read and size-checked by modclf.serving.body
    if not raw.strip() and optional_body:
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(400, "invalid_utf8", f"request body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise APIError(400, "invalid_json", "request body is empty; expected a JSON object")
    try:
        obj = strictjson.loads(text)
    except strictjson.DuplicateKey as exc:
        # which one counts differs between parsers (a proxy may read the first, Python the last)
        raise APIError(400, "duplicate_key", f"malformed JSON: the key {_printable(exc.key)!r} appears twice in "
                                             "one object") from None
    except json.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise APIError(400, "invalid_json", "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, integers with too many digits
        message = str(exc)
        if "digits" in message:
            message = f"a number with more than {sys.get_int_max_str_digits()} digits"
        raise APIError(400, "invalid_json", f"malformed JSON: {message}") from None
    if not isinstance(obj, dict):
        raise APIError(400, "invalid_body", f"request body must be a JSON object, got {_json_type(obj)}")
    check_fields(obj, allowed, required, "body")
    return obj


def check_fields(obj: dict[str, Any], allowed: Iterable[str], required: Iterable[str], where: str) -> None:
    """Reject unknown keys (typos must not be ignored silently) and missing required keys."""
    allowed = set(allowed)
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        names = ", ".join(repr(_printable(k)) for k in unknown[:5])
        raise APIError(400, "unknown_field", f"{where}: unknown field(s) {names}; allowed: {', '.join(sorted(allowed)) or 'none'}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise APIError(400, "missing_field", f"{where}: missing required field {missing[0]!r}")


def check_text(value: object, where: str) -> str:
    """A comment text: a non-blank string. Its length is bounded only by the request-size cap:
    a longer text than the model reads is classified on a window, never refused (fail closed)."""
    if not isinstance(value, str):
        raise APIError(400, "invalid_type", f"{where} must be a string, got {_json_type(value)}")
    if not value.strip():
        raise APIError(400, "empty_text", f"{where} is empty or only whitespace")
    return without_surrogates(value)


def check_id(value: object, where: str) -> str:
    """A client's comment id, echoed back: a string of at most MAX_ID_CHARS characters."""
    if not isinstance(value, str):
        raise APIError(400, "invalid_type", f"{where} must be a string, got {_json_type(value)}")
    if len(value) > MAX_ID_CHARS:
        raise APIError(400, "invalid_id", f"{where} has {len(value)} characters; the maximum is {MAX_ID_CHARS}")
    return without_surrogates(value)


def bool_arg(name: str, default: bool = False) -> bool:
    """A boolean query parameter, spelled exactly ``true`` or ``false`` (as in the OpenAPI document)."""
    values = request.args.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise APIError(400, "invalid_query", f"query parameter {name!r} given more than once")
    value = values[0]
    if value not in ("true", "false"):
        raise APIError(400, "invalid_query", f"query parameter {name!r} must be true or false")
    return value == "true"


def check_query(allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    unknown = sorted(k for k in request.args if k not in allowed)
    if unknown:
        names = ", ".join(repr(_printable(k)) for k in unknown[:5])
        raise APIError(400, "invalid_query", f"unknown query parameter(s) {names}; allowed: {', '.join(sorted(allowed)) or 'none'}")


def without_surrogates(text: str) -> str:
    """See :func:`modclf.moderator.clean_text` (the one place this is decided)."""
    return clean_text(text)


def _printable(value: str, limit: int = 40) -> str:
    value = without_surrogates(value)
    return value if len(value) <= limit else value[:limit] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
