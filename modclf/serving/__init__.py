"""The HTTP service: a Flask app factory around the :class:`~modclf.moderator.Moderator`.

``create_app()`` loads and verifies the model and the policy before returning, so a server built on
it (``modclf serve``: gunicorn with ``preload_app``) refuses to start on a bad model instead of
answering errors. Settings: :func:`modclf.settings.load_settings` (flags given as the ``config``
dict > ``MODCLF_*`` environment > settings file > defaults).

Blueprints, all registered here: ``ops`` (probes, metrics, OpenAPI), ``api`` (/v1/classify,
/v1/model, /v1/admin/reload), ``feedback`` (/v1/feedback, /v1/feedback/export), ``queue``
(/v1/queue, /v1/queue/{id}/decision: the review queue, :mod:`modclf.queue`), ``console``
(/moderate/: the moderation console, :mod:`modclf.serving.console`), and, when their
secrets are set, the integrations ``coral`` (/integrations/coral), ``coral_webhooks``
(/integrations/coral/webhooks: decisions made in Coral's queue, :mod:`.integrations.coral_webhooks`)
and ``akismet`` (/akismet/1.1/...).

For other blueprints: ``app.extensions["modclf"]`` is the :class:`~modclf.serving.state.ServiceState`
(classify, reload), ``app.extensions["modclf_openapi"]`` the OpenAPI document served at
/openapi.json, ``app.config["MODCLF"]`` the :class:`~modclf.settings.Settings`;
:func:`modclf.serving.validation.read_json_object` and :class:`modclf.serving.errors.APIError` give
the same strict input handling and JSON errors.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

from flask import Flask, g, request

from .api import bp as api_bp
from .auth import KeyRing, check_request, is_admin_path
from .body import ERROR_KEY, BodyGuard
from ..errors import ConfigError
from ..feedback import FeedbackStore
from ..settings import Settings, load_settings
from .feedback_api import bp as feedback_bp
from .queue_api import bp as queue_bp
from . import console
from ..queue import BackgroundRecorder, ReviewQueue
from .integrations import akismet, coral, coral_webhooks
from .integrations.openapi import add_paths
from .errors import APIError, register_error_handlers
from .metrics import ServiceMetrics
from .ops import bp as ops_bp
from .state import ServiceState

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"

__all__ = ["create_app", "ServiceState", "Settings", "ConfigError", "APIError", "OPENAPI_PATH"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. Raises ModelError / PolicyError / ConfigError (one-line reasons) when unusable."""
    cfg = load_settings(config)
    metrics = ServiceMetrics()
    state = ServiceState(cfg.model_dir, cfg.policy, explain_top=cfg.explain_top, metrics=metrics,
                         window_chars=cfg.max_text_chars)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.config["MODCLF"] = cfg
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep documented field order
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["modclf"] = state
    app.extensions["modclf_metrics"] = metrics
    app.extensions["modclf_openapi"] = openapi_document(cfg)

    #: paths whose view answers an over-cap body with a fail-closed verdict instead of a 413
    verdict_paths: set[str] = set()
    app.extensions["modclf_verdict_paths"] = verdict_paths
    app.wsgi_app = BodyGuard(app.wsgi_app, cfg.max_body_bytes,  # type: ignore[method-assign]
                             body_timeout=cfg.body_timeout, verdict_paths=verdict_paths.__contains__)

    register_error_handlers(app)
    _install_hooks(app, cfg, metrics)
    app.extensions["modclf_feedback"] = FeedbackStore(cfg.feedback_db)
    queue = ReviewQueue(app.extensions["modclf_feedback"])
    app.extensions["modclf_queue"] = queue
    # every held comment, whichever endpoint classified it; written off the request path
    queue.writer = BackgroundRecorder(queue.record, on_result=_queue_outcome(metrics))
    state.recorder = queue.writer
    app.register_blueprint(ops_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(feedback_bp)
    app.register_blueprint(queue_bp)
    console.install(app, cfg.console_secret, cfg.admin_keys)  # /moderate/: the queue for people
    installed = []
    if cfg.coral_signing_secret:  # without its secret an integration is absent (404), not open
        app.extensions["modclf_coral_secrets"] = cfg.coral_signing_secret
        app.register_blueprint(coral.bp)
        installed.append(f"coral ({len(cfg.coral_signing_secret)} signing secret(s))")
    if cfg.coral_webhook_secret:  # Coral's webhooks: moderators' decisions in Coral -> feedback
        app.extensions["modclf_coral_webhook_secrets"] = cfg.coral_webhook_secret
        app.register_blueprint(coral_webhooks.bp)
        installed.append(f"coral webhooks ({len(cfg.coral_webhook_secret)} signing secret(s))")
    if cfg.akismet_api_keys:
        app.extensions["modclf_akismet_keys"] = KeyRing(cfg.akismet_api_keys)
        app.register_blueprint(akismet.bp)
        installed.append(f"akismet ({len(cfg.akismet_api_keys)} key(s))")
    add_paths(app.extensions["modclf_openapi"], coral=bool(cfg.coral_signing_secret), akismet=bool(cfg.akismet_api_keys))
    if cfg.coral_webhook_secret:
        app.extensions["modclf_openapi"].setdefault("paths", {}).update(coral_webhooks.openapi_paths())
    log.info("service ready: model %s, policy %s, auth %s, integrations: %s, feedback store %s", state.model_version,
             cfg.policy, "on" if cfg.auth_enabled else "off", ", ".join(installed) or "none",
             app.extensions["modclf_feedback"].url)
    return app


def _install_hooks(app: Flask, cfg: Settings, metrics: ServiceMetrics) -> None:
    api_keys, admin_keys = KeyRing(cfg.api_keys), KeyRing(cfg.admin_keys)

    @app.before_request
    def _start() -> None:
        g.modclf_started = time.perf_counter()
        body_error = request.environ.get(ERROR_KEY)
        if body_error is not None:  # the body guard could not read the body (framing, size, time)
            status, code, message = body_error
            raise APIError(status, code, message)
        check_request(api_keys, admin_keys)

    @app.after_request
    def _observe(response: Any) -> Any:
        started = g.get("modclf_started")
        if started is not None:
            rule = request.url_rule
            endpoint = rule.rule if rule is not None else "unmatched"  # bounded label values
            metrics.observe_request(endpoint, request.method, response.status_code, started)
        return _relative_location(response)


def _relative_location(response: Any) -> Any:
    """Werkzeug's own redirects (a missing trailing slash, merged slashes) name this server by the
    request's ``Host`` header: ``Host: evil.example`` got ``Location: http://evil.example/moderate/``.
    Redirects to this server are sent as paths instead, which every client resolves against the
    address it actually used."""
    location = response.headers.get("Location")
    if location and 300 <= response.status_code < 400:
        own = request.host_url  # scheme://host/ as the request named it
        if location.startswith(own):
            response.headers["Location"] = "/" + location[len(own):]
    return response


def openapi_document(cfg: Settings) -> dict[str, Any]:
    """The repository's OpenAPI document with this instance's limits and security filled in."""
    doc = copy.deepcopy(_base_openapi())
    schemas = doc["components"]["schemas"]
    schemas["BatchRequest"]["properties"]["comments"]["maxItems"] = cfg.max_batch
    if cfg.auth_enabled or cfg.admin_api_keys:
        for path, item in doc["paths"].items():
            if not path.startswith("/v1/"):
                continue
            if is_admin_path(path) or cfg.auth_enabled:
                for operation in item.values():
                    operation["security"] = [{"bearerAuth": []}]
    return doc


_OPENAPI_CACHE: dict[str, Any] = {}


def _base_openapi() -> dict[str, Any]:
    if not _OPENAPI_CACHE:
        _OPENAPI_CACHE.update(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))
    return _OPENAPI_CACHE


def _queue_outcome(metrics: ServiceMetrics) -> Any:
    """Count and log what the background queue writer did with each batch of held comments."""

    def report(entries: list[Any], outcome: Any) -> None:
        if isinstance(outcome, Exception):
            log.error("review queue: %d held comment(s) not queued: %s", len(entries), outcome)
            metrics.queue_record_failures.inc(len(entries))
        elif isinstance(outcome, int) and outcome:
            metrics.queue_recorded.inc(outcome)

    return report
