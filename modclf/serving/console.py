"""The moderation console at ``/moderate/``: the review queue for people.

Server-rendered Jinja templates and one small script (``console/static/console.js``), no build
step. Pages: the queue (comment text, as the model read it: a comment longer than the model's
window is shown and explained on its bounded window, with "(shortened: N characters not shown)"
where text was left out; with the words that drove the prediction highlighted,
probability bars, approve / reject / relabel, keyboard shortcuts j/k/a/r/l, a counter of what is
left) and the recent decisions (a table and a chart of actions and labels per day).

Security:

- **Login.** When admin keys are configured (``MODCLF_ADMIN_API_KEYS``, else ``MODCLF_API_KEYS``)
  the console asks for one. The session cookie (``modclf_console``, path ``/moderate``,
  ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the request came over HTTPS, 12 hours) holds
  the SHA-256 of the key, never the key, and is checked against the configured keys on every
  request, so removing a key ends its sessions. Without any key configured the API is open, and so
  is the console (a banner says so).
- **Session secret.** The ``console_secret`` setting (``MODCLF_CONSOLE_SECRET``); when empty,
  derived from the admin keys with HMAC-SHA256 (every worker and every restart agree; changing
  the keys ends all sessions); with no key either, random per server start (gunicorn preloads the
  app, so its workers share it).
- **CSRF.** Every state-changing request (login, logout, decisions) carries the session's random
  token (a form field or the ``X-CSRF-Token`` header), compared in constant time; the cookie is
  also SameSite=Strict.
- **Comments are attacker-written HTML**: they are only ever inserted by Jinja autoescaping (the
  highlighted text is cut into pieces in Python, :func:`modclf.explain.segments`, and each piece
  is escaped) or by ``textContent`` in the script; and a strict Content-Security-Policy
  (``script-src 'self'``, no inline script or style) stops anything that slipped through.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import (Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request,
                   session, url_for)
from flask.sessions import SecureCookieSessionInterface

from ..errors import FeedbackError
from ..explain import segments, word_spans
from ..labels import LABELS
from ..queue import shown_text
from .auth import KeyRing
from .errors import APIError
from .queue_api import decide, get_queue
from .validation import read_json_object

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent / "console"
CONSOLE_PATH = "/moderate"
bp = Blueprint("modclf_console", __name__, url_prefix=CONSOLE_PATH, template_folder=str(HERE / "templates"),
               static_folder=str(HERE / "static"), static_url_path="/static")

COOKIE_NAME = "modclf_console"
SESSION_HOURS = 12
PAGE_SIZE = 50
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class _ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with ``Secure`` set whenever the request came over HTTPS.

    Only the console has sessions: its cookie's path is /moderate, so no other request carries one,
    and opening a (empty) session on every API request cost ~5% of a worker's CPU under load."""

    def open_session(self, app: Flask, request: Any) -> Any:  # type: ignore[override]
        path = request.path
        if path != CONSOLE_PATH and not path.startswith(CONSOLE_PATH + "/"):
            return None  # Flask substitutes its NullSession: readable as empty, never saved
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:  # type: ignore[override]
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def session_secret(console_secret: str, admin_keys: tuple[str, ...]) -> bytes:
    """The key signing the console's cookies (see the module docstring)."""
    if console_secret:
        return console_secret.encode("utf-8")
    if admin_keys:
        return hmac.new(b"modclf console session v1", "\n".join(sorted(admin_keys)).encode("utf-8"),
                        hashlib.sha256).digest()
    return os.urandom(32)


def install(app: Flask, console_secret: str, admin_keys: tuple[str, ...]) -> None:
    """Configure sessions for the console and register its blueprint."""
    app.secret_key = session_secret(console_secret, admin_keys)
    app.session_interface = _ConsoleSessions()
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_PATH=CONSOLE_PATH, PERMANENT_SESSION_LIFETIME=_dt.timedelta(hours=SESSION_HOURS))
    app.extensions["modclf_console_keys"] = KeyRing(admin_keys)
    app.register_blueprint(bp)


def _keys() -> KeyRing:
    return current_app.extensions["modclf_console_keys"]


def _logged_in() -> bool:
    ring = _keys()
    if not ring:
        return True  # no keys configured: the service is open, and so is the console
    digest = session.get("key")
    if not isinstance(digest, str) or len(digest) != 64:
        return False
    try:
        return ring.accepts_digest(bytes.fromhex(digest))
    except ValueError:
        return False


def _csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _check_csrf(given: str | None) -> None:
    token = session.get("csrf")
    if not isinstance(token, str) or not given or not hmac.compare_digest(token.encode(), given.encode("utf-8", "replace")):
        raise APIError(403, "csrf_failed", "missing or invalid CSRF token: reload the page")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/moderate/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    if not request.path.startswith("/moderate"):
        return {}
    return {"csrf_token": _csrf_token, "auth_required": bool(_keys()), "labels": LABELS}


# -- login --------------------------------------------------------------------------------------------


@bp.get("/login")
def login_form() -> Any:
    if not _keys():
        return redirect(url_for("modclf_console.queue_page"))
    return render_template("login.html", error=None)


@bp.post("/login")
def login() -> Any:
    _check_csrf(request.form.get("csrf_token"))
    key = request.form.get("key", "")
    if not _keys() or (key and _keys().accepts(key)):
        session.clear()
        session.permanent = True
        if _keys():
            session["key"] = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        _csrf_token()  # a fresh token for the new session
        return redirect(url_for("modclf_console.queue_page"), code=303)
    log.warning("console login refused (from %s)", request.remote_addr)
    return render_template("login.html", error="That is not an admin key of this service."), 401


@bp.post("/logout")
def logout() -> Any:
    _check_csrf(request.form.get("csrf_token"))
    session.clear()
    return redirect(url_for("modclf_console.login_form"), code=303)


# -- pages ----------------------------------------------------------------------------------------------


def _need_login() -> Response | None:
    if _logged_in():
        return None
    return redirect(url_for("modclf_console.login_form"), code=303)


def _gap(omitted: int) -> dict[str, Any]:
    return {"text": f"\n(shortened: {omitted:,} characters not shown)\n", "cls": None, "title": None, "gap": True}


def _highlight(item: Any, state: Any, moderator: Any, explain: bool = True) -> dict[str, Any]:
    """Template data for one queue item: text pieces with highlight classes, probability bars.

    Only what the model read is shown and explained (:func:`modclf.queue.shown_text`: the comment,
    or its bounded window when it is longer than the model's window), with a "(shortened: N
    characters not shown)" piece where text was left out, so an item costs at most the window
    whatever its length. The explanation of the window is the model's: ``word_spans`` of a text
    that fits the window explains exactly that text."""
    shown = shown_text(item.text, state.window_chars)
    spans = []
    try:
        if explain:
            spans = word_spans(moderator.model, shown.text, item.label, window_chars=state.window_chars)["spans"]
    except Exception:  # noqa: BLE001 - an explanation must never take the queue page down
        log.exception("console: no explanation for queue item %s", item.id)
    strongest = max((abs(s["contribution"]) for s in spans), default=0.0) or 1.0
    pieces = []
    done = 0  # characters of the comment accounted for (shown or marked as not shown)
    for start, end, orig_start, orig_end in shown.parts:
        if orig_start > done:
            pieces.append(_gap(orig_start - done))
        done = orig_end
        local = [{**s, "start": max(s["start"], start) - start, "end": min(s["end"], end) - start}
                 for s in spans if s["start"] < end and s["end"] > start]
        for text, span in segments(shown.text[start:end], local):
            if span is None or abs(span["contribution"]) < 0.15 * strongest:
                pieces.append({"text": text, "cls": None, "title": None})
                continue
            level = min(4, 1 + int(4 * abs(span["contribution"]) / strongest * 0.999))
            cls = f"{'pro' if span['contribution'] > 0 else 'con'}{level}"
            pieces.append({"text": text, "cls": cls,
                           "title": f"{span['contribution']:+.2f} toward {item.label}"})
    if shown.total > done:
        pieces.append(_gap(shown.total - done))
    top = sorted((s for s in spans if s["contribution"] > 0), key=lambda s: -s["contribution"])[:3]
    return {"item": item, "pieces": pieces, "why": [(s["text"], s["contribution"]) for s in top],
            "bars": [(label, item.probabilities.get(label, 0.0)) for label in LABELS],
            "omitted": shown.omitted, "explained": explain}


@bp.get("/")
def queue_page() -> Any:
    redirect_ = _need_login()
    if redirect_ is not None:
        return redirect_
    order = request.args.get("order", "oldest")
    order = order if order in ("oldest", "uncertain") else "oldest"
    label = request.args.get("label") or None
    label = label if label in LABELS else None
    state = current_app.extensions["modclf"]
    moderator = state.moderator
    try:
        page = get_queue().pending(order=order, label=label, limit=PAGE_SIZE)
    except FeedbackError as exc:
        log.error("console: queue unavailable: %s", exc)
        return render_template("error.html", message="The review queue is unavailable; try again shortly."), 503
    # Explanations cost ~25 us a character in a worker that serves nothing else meanwhile: a page
    # explains at most MODCLF_MAX_EXPLAIN_CHARS of comments, as ?explain=true does; the rest are
    # shown without highlights.
    budget = current_app.config["MODCLF"].max_explain_chars
    items = []
    for item in page.items:
        cost = min(len(item.text), state.window_chars)
        items.append(_highlight(item, state, moderator, explain=cost <= budget))
        budget -= cost if cost <= budget else 0
    return render_template("queue.html", items=items, pending=page.pending, order=order, label=label,
                           model_version=moderator.version, page_size=PAGE_SIZE)


@bp.get("/decisions")
def decisions_page() -> Any:
    redirect_ = _need_login()
    if redirect_ is not None:
        return redirect_
    queue = get_queue()
    try:
        recent = queue.recent_decisions(50)
        days = queue.decisions_by_day(14)
        pending = queue.pending_count()
    except FeedbackError as exc:
        log.error("console: queue unavailable: %s", exc)
        return render_template("error.html", message="The review queue is unavailable; try again shortly."), 503
    return render_template("decisions.html", recent=recent, chart=_chart(days), pending=pending)


def _chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry of the decisions chart (inline SVG, drawn by the template): one column per day,
    approve/reject stacked on the left bar, the decided labels stacked on the right bar."""
    width, height, pad = 640, 200, 24
    top = max((sum(d["actions"].values()) for d in days), default=0) or 1
    slot = (width - 2 * pad) / max(len(days), 1)
    bar = max(min(slot / 2 - 4, 28), 4)
    columns = []
    for i, day in enumerate(days):
        x = pad + i * slot + 2
        rects = []
        y = height - pad
        for action in ("approve", "reject"):
            h = (height - 2 * pad) * day["actions"].get(action, 0) / top
            y -= h
            rects.append({"x": round(x, 1), "y": round(y, 1), "w": round(bar, 1), "h": round(h, 1),
                          "cls": f"act-{action}", "title": f"{day['day']}: {day['actions'].get(action, 0)} {action}"})
        y = height - pad
        for label in LABELS:
            n = day["labels"].get(label, 0)
            h = (height - 2 * pad) * n / top
            y -= h
            rects.append({"x": round(x + bar + 2, 1), "y": round(y, 1), "w": round(bar, 1), "h": round(h, 1),
                          "cls": f"lab-{label}", "title": f"{day['day']}: {n} {label}"})
        columns.append({"day": day["day"][5:], "x": round(x + bar, 1), "rects": rects,
                        "total": sum(day["actions"].values())})
    return {"width": width, "height": height, "pad": pad, "columns": columns, "top": top,
            "totals": {a: sum(d["actions"].get(a, 0) for d in days) for a in ("approve", "reject")},
            "labels": {lab: sum(d["labels"].get(lab, 0) for d in days) for lab in LABELS}}


# -- decisions (JSON, for the script) -------------------------------------------------------------------


@bp.post("/decide/<int:item_id>")
def decide_item(item_id: int) -> Any:
    if not _logged_in():
        raise APIError(401, "unauthorized", "the console session has ended: log in again")
    _check_csrf(request.headers.get("X-CSRF-Token"))
    body = read_json_object({"action", "label", "override"}, {"action"})
    override = body.get("override", False)
    if not isinstance(override, bool):
        raise APIError(400, "invalid_type", "override must be true or false")
    answer = decide(get_queue(), item_id, body["action"], body.get("label"), override, "console")
    try:
        answer["pending"] = get_queue().pending_count()
    except FeedbackError:
        answer["pending"] = None
    return jsonify(answer)

