"""Operational endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from .validation import check_query

bp = Blueprint("modclf_ops", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """Alive: the process answers. Deliberately touches nothing else (the benchmark's baseline)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    check_query(())
    state = current_app.extensions.get("modclf")
    if state is None or not state.ready:
        response = jsonify({"error": {"code": "not_ready", "message": "model not loaded"}})
        response.status_code = 503
        return response
    return jsonify({"status": "ready", "model_version": state.model_version})


@bp.get("/metrics")
def metrics() -> Response:
    check_query(())
    body, content_type = current_app.extensions["modclf_metrics"].render()
    return Response(body, status=200, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    check_query(())
    """The document of this instance: limits and security as configured, plus integrations' paths."""
    return Response(json.dumps(current_app.extensions["modclf_openapi"]), status=200, content_type="application/json")
