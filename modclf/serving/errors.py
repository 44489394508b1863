"""JSON errors: every failure leaves the service as ``{"error": {"code", "message"}}``.

Clients (moderation queues) branch on ``code``; ``message`` is for humans. Nothing here ever puts a
stack trace or an exception's text from inside the service into a response: unexpected exceptions
are logged with their traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)

#: Codes for the HTTP errors werkzeug/Flask raise themselves (routing, body size).
_HTTP_CODES = {
    400: ("bad_request", "the request could not be understood"),
    401: ("unauthorized", "a valid API key is required"),
    403: ("forbidden", "forbidden"),
    404: ("not_found", "no such endpoint; see /openapi.json"),
    405: ("method_not_allowed", "method not allowed on this endpoint"),
    406: ("not_acceptable", "only application/json responses are available"),
    408: ("request_timeout", "the request body was not received in time"),
    411: ("length_required", "a Content-Length header is required"),
    413: ("payload_too_large", "request body too large"),
    414: ("uri_too_long", "request URI too long"),
    415: ("unsupported_media_type", "the body must be application/json"),
    416: ("range_not_satisfiable", "range not satisfiable"),
    431: ("headers_too_large", "request headers too large"),
}


class APIError(Exception):
    """An error answered as JSON with ``status``; raise it anywhere in a request."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _api_error(exc: APIError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _http_error(exc: HTTPException) -> Response | HTTPException:
    status = exc.code or 500
    if status < 400:  # redirects raised by routing are responses, not errors
        return exc
    code, default_message = _HTTP_CODES.get(status, ("http_error", exc.name or "error"))
    message = default_message
    if status == 413 and current_app.config.get("MAX_CONTENT_LENGTH"):
        message = f"request body larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    if status >= 500:
        log.error("HTTP %s raised inside the service: %s", status, exc.description)
        code, message = ("internal_error", "internal error") if status == 500 else (code, exc.name or "error")
    return error_response(status, code, message, headers)


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled exception while serving a request")
    return error_response(500, "internal_error", "internal error")


def register_error_handlers(app: Flask) -> None:
    """Install the JSON handlers: APIError, every werkzeug HTTPException, and a catch-all."""
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
