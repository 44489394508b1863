"""Akismet-compatible API under ``/akismet/``: a client whose base URL is ``http://HOST:PORT/akismet/``
(instead of ``https://rest.akismet.com/``) uses this classifier for its spam checks.

The four Akismet 1.1 calls, as Akismet documents them: POST, form-encoded
(``application/x-www-form-urlencoded``, in ``blog_charset`` when given, else UTF-8), plain-text
answers with status 200:

``1.1/verify-key``  ``key``, ``blog``  -> ``valid`` | ``invalid`` (+ ``X-akismet-debug-help``)
``1.1/comment-check``  ``api_key``, ``blog``, ``user_ip`` required; ``comment_content``,
    ``comment_author``, ``comment_author_email``, ``user_role``, ``is_test``, ... optional
    -> ``true`` (spam) | ``false`` (ham); ``true`` with ``X-akismet-pro-tip: discard`` for spam
    so certain the client may drop it unseen; ``invalid`` for a bad key or blog.
``1.1/submit-spam``, ``1.1/submit-ham``  same fields -> ``Thanks for making the web a better place.``

Keys are those of ``AKISMET_API_KEYS`` (comma-separated), compared in constant time. A missing
required field is answered ``Missing required field: <name>.`` with ``X-akismet-debug-help``.

Verdict: ``true`` when spam is why the policy does not simply approve the comment (top label spam,
or p(spam) at a spam escalation: see :func:`modclf.integrations.spam_signal`), so a comment the
policy would hold for possible spam lands in the client's spam queue instead of being published;
``discard`` when, in addition, the policy's action is ``reject``. Akismet's documented test values
behave as documented: ``comment_author`` ``akismet-guaranteed-spam`` (or the older ``viagra-test-123``)
or ``comment_author_email`` ``akismet-guaranteed-spam@example.com`` always give ``true``;
``user_role`` ``administrator`` always gives ``false``.

submit-spam / submit-ham record the moderator's decision in the feedback store (label ``spam`` or
``ham``) before answering, keyed by a digest of the comment's identifying fields so a repeated
submission is not counted twice. As Akismet documents, calls with ``is_test`` set have no training
effect: they are answered but not stored. Our classifier judges text, so submissions must carry
``comment_content``.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
from urllib.parse import unquote_to_bytes, urlsplit

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..feedback import HAM, get_store, record_or_503
from ..serving.auth import KeyRing
from ..serving.errors import APIError
from ..serving.state import ServiceState
from . import plain_text, spam_signal

log = logging.getLogger(__name__)

PREFIX = "/akismet"
bp = Blueprint("modclf_akismet", __name__, url_prefix=PREFIX)

SUBMISSION_RESPONSE = "Thanks for making the web a better place."
PRO_TIP_HEADER = "X-akismet-pro-tip"
DEBUG_HEADER = "X-akismet-debug-help"
TEST_SPAM_AUTHORS = ("akismet-guaranteed-spam", "viagra-test-123")
TEST_SPAM_EMAIL = "akismet-guaranteed-spam@example.com"
TEST_HAM_ROLE = "administrator"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "")
_TRUE = ("1", "true", "yes", "on")


def _plain(body: str, headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=200, content_type="text/plain; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _invalid(reason: str) -> Response:
    return _plain("invalid", {DEBUG_HEADER: reason})


def _missing(field: str) -> Response:
    message = f"Missing required field: {field}."
    return _plain(message, {DEBUG_HEADER: message})


def _split_form(raw: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        pairs.append((unquote_to_bytes(name.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    return pairs


def _codec(charset: str | None) -> str:
    if charset:
        try:
            return codecs.lookup(charset.strip()).name
        except LookupError:
            log.info("unknown blog_charset %r; decoding the form as UTF-8", charset[:40])
    return "utf-8"


def read_form() -> dict[str, str]:
    """The request's form fields (first value of each), decoded in the client's ``blog_charset``."""
    if request.mimetype not in _FORM_TYPES:
        raise APIError(415, "unsupported_media_type",
                       f"Akismet calls are form-encoded (application/x-www-form-urlencoded); got {request.mimetype}")
    if request.mimetype == "multipart/form-data":
        return {k: request.form.get(k, "") for k in request.form}
    raw = request.get_data(cache=False)  # werkzeug raises 413 above MAX_CONTENT_LENGTH
    cap = request.max_content_length
    if cap is not None and request.content_length is None and len(raw) >= cap:
        raise RequestEntityTooLarge()
    pairs = _split_form(raw)
    charset = next((v.decode("ascii", "replace") for k, v in pairs if k == b"blog_charset"), None)
    codec = _codec(charset)
    form: dict[str, str] = {}
    for name, value in pairs:
        key = name.decode(codec, "replace")
        form.setdefault(key, value.decode(codec, "replace"))
    return form


def _keys() -> KeyRing:
    return current_app.extensions["modclf_akismet_keys"]


def _blog_ok(blog: str) -> bool:
    parts = urlsplit(blog)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_common(form: dict[str, str]) -> Response | None:
    """The answer to a call with a bad key, blog or IP (None when they are fine)."""
    key = form.get("api_key", "")
    if not key:
        return _invalid('Empty "api_key" value')
    if not _keys().accepts(key):
        return _invalid("Invalid API key")
    blog = form.get("blog", "")
    if not blog:
        return _invalid('Empty "blog" value')
    if not _blog_ok(blog):
        return _invalid("We were unable to parse your blog URI (it must start with http:// or https://)")
    if not form.get("user_ip", "").strip():
        return _missing("user_ip")
    return None


def _content(form: dict[str, str]) -> str:
    text = plain_text(form.get("comment_content", ""))
    max_chars = current_app.config["MODCLF"].max_text_chars
    if len(text) > max_chars:
        raise APIError(400, "text_too_long", f"comment_content has {len(text)} characters; the maximum is {max_chars}")
    return text


@bp.post("/1.1/verify-key")
def verify_key() -> Response:
    form = read_form()
    key, blog = form.get("key", ""), form.get("blog", "")
    if not key:
        return _invalid('Empty "key" value')
    if not blog:
        return _invalid('Empty "blog" value')
    if not _blog_ok(blog):
        return _invalid("We were unable to parse your blog URI (it must start with http:// or https://)")
    return _plain("valid") if _keys().accepts(key) else _invalid("Invalid API key")


@bp.post("/1.1/comment-check")
def comment_check() -> Response:
    form = read_form()
    refused = _check_common(form)
    if refused is not None:
        return refused
    if form.get("comment_author", "") in TEST_SPAM_AUTHORS or form.get("comment_author_email", "") == TEST_SPAM_EMAIL:
        return _plain("true")
    if form.get("user_role", "") == TEST_HAM_ROLE:
        return _plain("false")
    text = _content(form)
    if not text.strip():
        return _plain("false")  # nothing to judge (e.g. a sign-up without text)
    state: ServiceState = current_app.extensions["modclf"]
    policy = state.policy
    result = state.classify([text])[0]
    if not spam_signal(result, policy):
        return _plain("false")
    if result["action"] == "reject":
        return _plain("true", {PRO_TIP_HEADER: "discard"})
    return _plain("true")


def submission_id(form: dict[str, str], text: str) -> str:
    """Akismet submissions carry no comment id: the digest of the fields that identify the comment,
    so the same comment submitted again (or reclassified: spam, then ham) is one decision."""
    fields = ("blog", "permalink", "comment_author", "comment_author_email", "comment_date_gmt")
    material = "\x1f".join([*(form.get(f, "") for f in fields), text])
    return "akismet:" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]


def _submit(label: str, endpoint: str) -> Response:
    form = read_form()
    refused = _check_common(form)
    if refused is not None:
        return refused
    text = _content(form)
    if not text.strip():
        return _missing("comment_content")
    if form.get("is_test", "").strip().lower() in _TRUE:
        log.info("akismet %s with is_test: answered, not stored", endpoint)
        return _plain(SUBMISSION_RESPONSE)
    source = f"akismet/{endpoint} {form.get('blog', '')}"
    outcome = record_or_503(get_store(), submission_id(form, text), text, label, source)
    log.info("akismet %s: decision %s", endpoint, outcome)
    return _plain(SUBMISSION_RESPONSE)


@bp.post("/1.1/submit-spam")
def submit_spam() -> Response:
    return _submit("spam", "submit-spam")


@bp.post("/1.1/submit-ham")
def submit_ham() -> Response:
    return _submit(HAM, "submit-ham")

