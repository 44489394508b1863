"""The /v1 API: classify one comment, classify a batch, describe the model, reload it."""

from __future__ import annotations

import logging
import math
import os
import signal
from typing import Any

from flask import Blueprint, current_app, jsonify

from ..errors import ModelError, PolicyError
from ..explain import word_spans
from ..moderator import Moderator
from ..labels import LABELS
from ..settings import Settings
from .errors import APIError
from .state import ServiceState
from .validation import (MAX_ID_CHARS, bool_arg, check_fields, check_id, check_query, check_text, read_json_object,
                         without_surrogates)

log = logging.getLogger(__name__)

bp = Blueprint("modclf_api", __name__)


def _state() -> ServiceState:
    return current_app.extensions["modclf"]


def _config() -> Settings:
    return current_app.config["MODCLF"]


@bp.post("/v1/classify")
def classify_one() -> Any:
    check_query({"explain"})
    explain = bool_arg("explain")
    cfg = _config()
    body = read_json_object({"text", "id"}, {"text"})
    text = check_text(body["text"], "text")
    comment_id = check_id(body["id"], "id") if "id" in body else None
    state = _state()
    if explain:
        _check_explain_budget([text], cfg, state.window_chars)
    moderator = state.moderator  # one snapshot: the verdict and its word spans from the same model
    result = state.classify([text], explain=explain, source="v1/classify", ids=[comment_id], moderator=moderator)[0]
    if explain:
        _add_spans([result], [text], moderator, state.window_chars)
    return jsonify({"id": comment_id, **result})


@bp.post("/v1/classify/batch")
def classify_batch() -> Any:
    check_query({"explain"})
    explain = bool_arg("explain")
    cfg = _config()
    body = read_json_object({"comments"}, {"comments"})
    comments = body["comments"]
    if not isinstance(comments, list):
        raise APIError(400, "invalid_type", "comments must be an array of {id, text} objects")
    if not comments:
        raise APIError(400, "empty_batch", "comments is empty; send at least one comment")
    if len(comments) > cfg.max_batch:
        raise APIError(400, "batch_too_large", f"comments has {len(comments)} items; the maximum is {cfg.max_batch}")
    # Per item: a bad item gets {"id", "error"} in its place and every other item its result.
    slots: list[dict[str, Any]] = []  # per item: {"id"} (to classify) or {"id", "error"}
    ids: list[str | None] = []
    texts: list[str] = []
    for i, item in enumerate(comments):
        where = f"comments[{i}]"
        item_id = _echo_id(item)
        try:
            if not isinstance(item, dict):
                raise APIError(400, "invalid_type", f"{where} must be an object with a text field")
            check_fields(item, {"id", "text"}, {"text"}, where)
            text = check_text(item["text"], f"{where}.text")
            comment_id = check_id(item["id"], f"{where}.id") if "id" in item else None
        except APIError as exc:
            slots.append({"id": item_id, "error": {"code": exc.code, "message": exc.message}})
            continue
        slots.append({"id": comment_id})
        ids.append(comment_id)
        texts.append(text)
    state = _state()
    if explain:
        _check_explain_budget(texts, cfg, state.window_chars)
    moderator = state.moderator
    classified = state.classify(texts, explain=explain, source="v1/classify/batch", ids=ids, moderator=moderator)
    if explain:
        _add_spans(classified, texts, moderator, state.window_chars)
    verdicts = iter(classified)
    results = [slot if "error" in slot else {**slot, **next(verdicts)} for slot in slots]
    errors = sum("error" in r for r in results)
    return jsonify({"count": len(results), "errors": errors, "results": results})


def _check_explain_budget(texts: list[str], cfg: Settings, window_chars: int) -> None:
    """400 when explaining ``texts`` would hold the worker too long (``max_explain_chars``).

    An explanation costs ~25 us a character (scikit-learn's analyzers, twice) in a worker that serves
    nothing else meanwhile: three concurrent batches of 256 long comments with explain=true held
    both workers of a 2-CPU server past gunicorn's timeout, and they were killed. Each comment
    counts up to the model's window (what is explained of it)."""
    total = sum(min(len(t), window_chars) for t in texts)
    if total > cfg.max_explain_chars:
        raise APIError(400, "explain_too_large",
                       f"explain=true covers at most {cfg.max_explain_chars} characters of comments per request "
                       f"(MODCLF_MAX_EXPLAIN_CHARS); this one has {total}: send fewer comments per request or "
                       "leave explain out")


def _add_spans(results: list[dict[str, Any]], texts: list[str], moderator: Moderator, window_chars: int) -> None:
    """``explanation.spans`` / ``unplaced``: the contributions gathered into words of the original
    text (:func:`modclf.explain.word_spans`), beside the raw n-grams."""
    for result, text in zip(results, texts):
        words = word_spans(moderator.model, text, result["label"], window_chars=window_chars)
        result["explanation"]["spans"] = words["spans"]
        result["explanation"]["unplaced"] = words["unplaced"]


def _echo_id(item: object) -> str | None:
    """The id of a batch item, echoed beside its error when it is a usable one (else null)."""
    if isinstance(item, dict):
        value = item.get("id")
        if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
            return without_surrogates(value)
    return None


@bp.get("/v1/model")
def model_info() -> Any:
    check_query(())
    state, cfg = _state(), _config()
    model = state.model
    meta = model.artifact.meta
    evaluations = {
        name: {k: v for k, v in entry.items() if k in ("model", "baseline", "evaluated_at", "sha256")}
        for name, entry in (meta.get("evaluations") or {}).items() if isinstance(entry, dict)
    }
    return jsonify(_json_safe({
        "model_version": model.version,
        "labels": list(LABELS),
        "trained_at": meta.get("trained_at"),
        "training_rows": (meta.get("training_data") or {}).get("rows"),
        "loaded_at": model.loaded_at,
        "metrics": meta.get("metrics") or {},
        "evaluations": evaluations,
        "thresholds": state.policy.describe(),
        "limits": {"max_text_chars": cfg.max_text_chars, "max_batch": cfg.max_batch,
                   "max_body_bytes": cfg.max_body_bytes, "explain_top": state.explain_top},
    }))


@bp.post("/v1/admin/reload")
def admin_reload() -> Any:
    """Reload model and policy here, then (under gunicorn) have the master replace every worker."""
    check_query(())
    read_json_object((), optional_body=True)
    state = _state()
    previous = state.model_version
    try:
        version, policy = state.reload_all()
    except (ModelError, PolicyError) as exc:
        log.error("reload failed, still serving %s: %s", previous, exc)
        raise APIError(409, "reload_failed", f"reload failed, still serving {previous}: {exc}") from None
    scope = "process"
    if state.supervisor_pid:
        try:
            os.kill(state.supervisor_pid, signal.SIGHUP)  # graceful: new workers, old ones drain
            scope = "all_workers"
        except OSError as exc:
            log.error("could not signal the gunicorn master %s: %s", state.supervisor_pid, exc)
    log.info("admin reload: %s -> %s (%s)", previous, version, scope)
    return jsonify({"model_version": version, "previous_version": previous,
                    "policy_sha256": policy.sha256, "scope": scope})


def _json_safe(value: Any) -> Any:
    """Non-finite floats (possible in model.json) become null: NaN is not JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
