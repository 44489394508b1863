"""The HTTP service: a Flask app factory around the classifier, the policy and their metrics.

``create_app()`` loads and verifies the model and the policy before returning, so a server built on
it (serve.py, gunicorn with ``preload_app``) refuses to start on a bad model instead of answering
errors. Settings come from ``MODCLF_*`` environment variables and the ``config`` dict (see
:mod:`modclf.serving.config`).

Extension points for other blueprints:

- ``app.extensions["modclf"]``: the :class:`~modclf.serving.state.ServiceState` (classify, reload,
  policy, model_version);
- ``app.extensions["modclf_openapi"]``: the OpenAPI document served at /openapi.json (add paths);
- ``app.config["MODCLF"]``: the :class:`~modclf.serving.config.ServiceConfig` (``.extra`` holds
  unknown ``MODCLF_*`` settings);
- :func:`modclf.serving.validation.read_json_object` and :class:`modclf.serving.errors.APIError`
  for the same strict input handling and JSON errors;
- ``modclf.integrations.register_integrations(app)`` is called when that module exists.
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
from .auth import KeyRing, check_request
from .body import ERROR_KEY, BodyGuard
from .config import ConfigError, ServiceConfig, load_config
from .errors import APIError, register_error_handlers
from .metrics import ServiceMetrics
from .ops import bp as ops_bp
from .state import ServiceState

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"

__all__ = ["create_app", "ServiceState", "ServiceConfig", "ConfigError", "APIError", "OPENAPI_PATH"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. Raises ModelError / PolicyError / ConfigError (one-line reasons) when unusable."""
    cfg = load_config(config)
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
    app.register_blueprint(ops_bp)
    app.register_blueprint(api_bp)
    _register_integrations(app)
    log.info("service ready: model %s, policy %s, auth %s", state.model_version, cfg.policy,
             "on" if cfg.auth_enabled else "off")
    return app


def _install_hooks(app: Flask, cfg: ServiceConfig, metrics: ServiceMetrics) -> None:
    api_keys, admin_keys = KeyRing(cfg.api_keys), KeyRing(cfg.admin_keys)

    @app.before_request
    def _start() -> None:
        g.modclf_started = time.perf_counter()
        body_error = request.environ.get(ERROR_KEY)
        if body_error is not None:  # the body guard could not read the body (framing, size, time)
            status, code, message = body_error
            raise APIError(status, code, message, {"Connection": "close"})
        check_request(api_keys, admin_keys)

    @app.after_request
    def _observe(response: Any) -> Any:
        started = g.get("modclf_started")
        if started is not None:
            rule = request.url_rule
            endpoint = rule.rule if rule is not None else "unmatched"  # bounded label values
            metrics.observe_request(endpoint, request.method, response.status_code, started)
        return response


def openapi_document(cfg: ServiceConfig) -> dict[str, Any]:
    """The repository's OpenAPI document with this instance's limits and security filled in."""
    doc = copy.deepcopy(_base_openapi())
    schemas = doc["components"]["schemas"]
    schemas["BatchRequest"]["properties"]["comments"]["maxItems"] = cfg.max_batch
    if cfg.auth_enabled or cfg.admin_api_keys:
        for path, item in doc["paths"].items():
            if not path.startswith("/v1/"):
                continue
            if path.startswith("/v1/admin/") or cfg.auth_enabled:
                for operation in item.values():
                    operation["security"] = [{"bearerAuth": []}]
    return doc


_OPENAPI_CACHE: dict[str, Any] = {}


def _base_openapi() -> dict[str, Any]:
    if not _OPENAPI_CACHE:
        _OPENAPI_CACHE.update(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))
    return _OPENAPI_CACHE


def _register_integrations(app: Flask) -> None:
    """Call modclf.integrations.register_integrations(app) when that module is installed."""
    try:
        from modclf.integrations import register_integrations  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        if exc.name in ("modclf.integrations",):
            log.debug("no modclf.integrations module; serving the core API only")
            return
        raise
    register_integrations(app)

