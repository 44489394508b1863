"""Akismet-compatible API under ``/akismet/``: a client whose base URL is ``http://HOST:PORT/akismet/``
(instead of ``https://rest.akismet.com/``) uses this classifier for its spam checks.

The calls, as Akismet's API reference documents them (akismet.com/developers/): POST, form-encoded
(``application/x-www-form-urlencoded``; ``multipart/form-data`` is read too), plain-text answers,
always status 200 for anything Akismet itself answers::

    1.1/verify-key     api_key (or the older key), blog   -> valid | invalid (+ X-akismet-debug-help)
    1.1/comment-check  api_key, blog, user_ip + optional   -> true | false | invalid | Missing required field: user_ip.
                       true + "X-akismet-pro-tip: discard": spam so certain the client may drop it unseen
    1.1/submit-spam    same fields                         -> Thanks for making the web a better place.
    1.1/submit-ham     same fields                         -> Thanks for making the web a better place.
    1.2/usage-limit,   404 not_found: they report the usage of an Akismet subscription; a
    1.2/key-sites      self-hosted classifier has no plan, call limit or per-site accounting
                       (call counts are in /metrics). Any other 1.2/ name: the same 404.

``invalid`` (bad or missing key, blog that is not an http(s) URL) and ``Missing required field: ...``
carry ``X-akismet-debug-help`` saying what was wrong; a verdict never carries it (some clients, e.g.
``@cedx/akismet``, treat that header as an error). Akismet's account alerts (``X-akismet-alert-code``,
``X-akismet-alert-msg``: usage limits, subscription problems) do not exist here and are never sent.

Where the key goes. The body's ``api_key`` (Akismet's current name) or ``key`` (its older name,
still sent by some clients' verify-key) is used when present. Clients written for Akismet's older
key-as-subdomain style (``https://<key>.rest.akismet.com/1.1/comment-check``, no key in the body:
e.g. the npm ``akismet-api`` and older WordPress plugins) are served too: when comment-check,
submit-spam or submit-ham carry no key, the first label of the ``Host`` name is taken as the key.
That needs ``<key>.<your host>`` to resolve to this service (a wildcard DNS record, or
``*.localhost`` on resolvers that map it to loopback) and a key that survives as a DNS label
(lowercase letters, digits and ``-``: URL parsers lowercase host names). A bare IP address or a
single-label host name never yields a key. verify-key reads its key from the body only.

Keys are those of ``AKISMET_API_KEYS`` (comma-separated), compared in constant time. Keys are not
tied to sites: any ``blog`` that is an http(s) URL is accepted with any configured key.

Parameters (comment-check, submit-spam, submit-ham), and what this service does with each:

=============================  ==================================================================
``api_key`` (required)          the key (or ``key``, or the Host's first label; see above);
                                missing or unknown -> ``invalid``
``blog`` (required)             must be an http(s) URL with a host, else ``invalid``; recorded as
                                the source of a submission and part of its identity
``user_ip`` (required)          must be non-blank, else ``Missing required field: user_ip.``;
                                not used for the verdict (the classifier judges text)
``user_agent``, ``referrer``    accepted, not used
``permalink``                   part of a submission's identity (see below)
``comment_type``                accepted, not used: every type's text is judged the same way
``comment_author``              ``akismet-guaranteed-spam`` (or the older ``viagra-test-123``)
                                always gives ``true``; otherwise read on its own by the model: a
                                name that reads as spam (a plug, a link) gives ``true`` with
                                ``X-modclf-reason``; part of a submission's identity
``comment_author_email``        ``akismet-guaranteed-spam@example.com`` always gives ``true``;
                                part of a submission's identity
``comment_author_url``          accepted, not used (a commenter's own website is ordinary; a bare
                                URL tells the model nothing)
``comment_content``             the text judged (HTML: tags removed, link targets kept); empty ->
                                ``false`` on comment-check, ``Missing required field:
                                comment_content.`` on submissions (a decision without text cannot
                                train a text classifier). Longer than the model's window: judged on
                                the window; if the policy does not approve it (by default a
                                truncated comment is never approved) the answer is ``true`` (with
                                ``X-modclf-reason``): Akismet has no "hold for review" answer and
                                ``false`` would publish it
``comment_date_gmt``            part of a submission's identity
``comment_post_modified_gmt``   accepted, not used
``comment_context``             accepted (also as ``comment_context[]`` / ``comment_context[N]``),
                                not used
``blog_lang``                   accepted, not used
``blog_charset``                the encoding of the ``comment_*`` values (Akismet: "the character
                                encoding for the form values included in comment_* parameters");
                                other fields and all names are UTF-8. Only real text encodings
                                are honoured; anything else (not a codec, a bytes-to-bytes codec
                                such as rot13/base64/zlib/hex/bz2/uu/quopri, the escape codecs
                                unicode_escape/raw_unicode_escape, domain-name codecs idna/punycode,
                                an unknown, over-long or non-ASCII name, a NUL byte) is ignored and
                                the values are read as UTF-8, invalid bytes replaced by U+FFFD
``user_role``                   ``administrator`` always gives ``false`` (after the
                                guaranteed-spam test values)
``is_test``                     ``1``/``true``/``yes``/``on``: no training effect (Akismet's
                                definition): submissions are answered but not stored. A check
                                never trains anything here, so comment-check is unaffected
``recheck_reason``              accepted: a recheck is judged like a first check (the verdict
                                depends only on the content and the policy)
``honeypot_field_name``         names the form's hidden honeypot field, whose value is sent as
                                the field of that name: a non-blank value gives ``true`` (not
                                ``discard``: browser autofill fills hidden fields too, so a
                                moderator may still rescue it). A name that is one of the
                                documented parameters above is ignored
anything else                   (e.g. the ``$_SERVER`` variables Akismet asks PHP sites to send)
                                accepted, not used
=============================  ==================================================================

Decoding, and why nothing here answers 5xx: every field is percent-decoded to bytes, then decoded
(``comment_*`` values in ``blog_charset``, the rest in UTF-8) with invalid bytes replaced; any lone
UTF-16 surrogate a decoder may produce (e.g. UTF-7) and any NUL are replaced by U+FFFD, so every
value is valid Unicode that UTF-8, JSON, the logs and every feedback database accept. Malformed
percent escapes stay as they are. A field given twice counts once: the first occurrence wins.
More than :data:`MAX_FIELDS` fields: 413, except on comment-check, which answers ``true`` unread
(clients forward the commenter's request headers as ``HTTP_*`` fields, so the commenter controls
how many there are, and a refusal would publish the comment). A malformed multipart body (no boundary, broken
framing): 400 ``invalid_body``; multipart file parts are ignored. Another content type: 415.

Verdict: ``true`` when spam is why the policy does not simply approve the comment (top label spam,
or p(spam) at a spam escalation: see :func:`modclf.integrations.spam_signal`), so a comment the
policy would hold for possible spam lands in the client's spam queue instead of being published;
``discard`` when, in addition, the policy's action is ``reject``. Also ``true`` (with
``X-modclf-reason``) when the policy holds a comment the model could not read: longer than its
window, or in a language it was not trained on (the policy's floors); Akismet has no "hold" answer,
and ``false`` would publish what nobody has read. A comment held for any other reason (a possible
dispute) gets ``false``: it was read, and it is not spam.

Fail closed on over-size bodies: a comment-check body above the request cap (``MAX_CONTENT_LENGTH``)
is not refused with 413 (most clients read a non-2xx answer as "no opinion" and publish): its small
fields (key, blog, user_ip, test values, honeypot; at most :data:`MAX_FIELDS`, each at most 4 KiB)
are read as it streams in, the comment text is skipped unread, and a valid request is answered
``true`` (spam queue, for a moderator) with ``X-modclf-reason`` saying so (not
``X-akismet-debug-help``, which clients read as an error); the documented test values still apply. A multipart or
over-64-MiB body, and over-size submissions (not verdicts), are refused with 413. This needs the
path registered as a verdict path of :mod:`modclf.serving.body`, which this blueprint does itself.

submit-spam / submit-ham record the moderator's decision in the feedback store (label ``spam`` or
``ham``) before answering, keyed by a digest of the comment's identifying fields (``blog``,
``permalink``, ``comment_author``, ``comment_author_email``, ``comment_date_gmt`` and the text) so a
repeated submission is not counted twice.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import ipaddress
import logging
import quopri
import re
from typing import Any, Iterable, Iterator
from urllib.parse import unquote_to_bytes, urlsplit

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder

from ...feedback import HAM
from ...language import UNDETERMINED, dominant_script
from ..feedback_api import get_store, record_or_503
from ..auth import KeyRing
from ..body import OVERSIZE_KEY, PREFIX_KEY, BodyTimeout, deadline, read_chunks
from ..errors import APIError
from ..state import ServiceState
from . import plain_text, spam_signal

log = logging.getLogger(__name__)

PREFIX = "/akismet"
bp = Blueprint("modclf_akismet", __name__, url_prefix=PREFIX)
COMMENT_CHECK_PATH = f"{PREFIX}/1.1/comment-check"

SUBMISSION_RESPONSE = "Thanks for making the web a better place."
PRO_TIP_HEADER = "X-akismet-pro-tip"
DEBUG_HEADER = "X-akismet-debug-help"
#: Why a ``true`` is not the model's spam verdict (over-size body, truncated text). Not
#: X-akismet-debug-help: clients such as @cedx/akismet treat that header as an error, and an error
#: is what publishes a comment.
REASON_HEADER = "X-modclf-reason"
TEST_SPAM_AUTHORS = ("akismet-guaranteed-spam", "viagra-test-123")
TEST_SPAM_EMAIL = "akismet-guaranteed-spam@example.com"
TEST_HAM_ROLE = "administrator"
#: The parameters Akismet documents for comment-check, submit-spam and submit-ham. A honeypot
#: field may not be one of them.
PARAMETERS = frozenset({
    "api_key", "key", "blog", "user_ip", "user_agent", "referrer", "permalink", "comment_type",
    "comment_author", "comment_author_email", "comment_author_url", "comment_content", "comment_date_gmt",
    "comment_post_modified_gmt", "comment_context", "blog_lang", "blog_charset", "user_role", "is_test",
    "recheck_reason", "honeypot_field_name",
})
#: Most form fields one call may carry (WordPress sends a few dozen, $_SERVER variables included).
MAX_FIELDS = 1000
#: An author name longer than this is read by its head (names are short; the body cap bounds the field).
MAX_AUTHOR_CHARS = 500
#: Text codecs Python has that are not charsets for form text: escape decoders (they interpret
#: backslashes and can produce lone surrogates) and domain-name codecs (strict only, ASCII input).
NOT_CHARSETS = frozenset({"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"})
#: A charset name as IANA registers them (printable ASCII, at most 64 characters).
_CHARSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+()-]{0,63}")
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "")
_TRUE = ("1", "true", "yes", "on")
#: Over-size comment-check: fields longer than this are skipped unread while the body streams in
#: (the comment text); a body longer than MAX_STREAMED_BYTES in all is refused with 413.
_SMALL_FIELD_BYTES = 4096
MAX_STREAMED_BYTES = 64 << 20


def _register_verdict_path(state: BlueprintSetupState) -> None:
    """comment-check gives a fail-closed verdict for an over-size body instead of a 413."""
    paths = state.app.extensions.get("modclf_verdict_paths")
    if paths is not None:
        paths.add(COMMENT_CHECK_PATH)


bp.record_once(_register_verdict_path)


# -- answers ------------------------------------------------------------------------------------

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


# -- reading the form ---------------------------------------------------------------------------

def clean(text: str) -> str:
    """``text`` with lone surrogates and NUL replaced by U+FFFD: valid for UTF-8, JSON, logs and
    every database (PostgreSQL refuses NUL in text)."""
    if text.isascii() and "\x00" not in text:
        return text
    return _UNSAFE.sub("\ufffd", text)


def charset_codec(name: bytes | str | None) -> str:
    """The Python codec for a ``blog_charset`` value, or ``utf-8`` when it is not a text encoding
    fit for form values (see the module docstring)."""
    if not name:
        return "utf-8"
    text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    text = text.strip()
    if _CHARSET_NAME.fullmatch(text):
        try:
            info = codecs.lookup(text)
        except (LookupError, ValueError, TypeError):
            info = None
        if info is not None and getattr(info, "_is_text_encoding", True) \
                and info.name.replace("-", "_") not in NOT_CHARSETS:
            return info.name
    log.info("blog_charset %s is not a text encoding; comment fields read as UTF-8", ascii(text[:40]))
    return "utf-8"


def decode(value: bytes, codec: str) -> str:
    """Bytes of a form value as text in ``codec`` (UTF-8 when that fails), invalid bytes replaced."""
    try:
        text = value.decode(codec, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        text = value.decode("utf-8", "replace")
    return clean(text)


def _unsupported_type() -> APIError:
    return APIError(415, "unsupported_media_type",
                    f"Akismet calls are form-encoded (application/x-www-form-urlencoded); got {request.mimetype}")


class TooManyFields(APIError):
    """More than MAX_FIELDS form fields: 413, except on comment-check (a verdict: see comment_check)."""

    def __init__(self) -> None:
        super().__init__(413, "payload_too_large", f"more than {MAX_FIELDS} form fields")


class UnreadableField(APIError):
    """A multipart field in a transfer encoding this service does not decode: 400, except on
    comment-check, where the comment exists but was not read (a verdict: see comment_check)."""

    def __init__(self, name: str, encoding: str) -> None:
        super().__init__(400, "invalid_body", f"form field {name!a}: Content-Transfer-Encoding {encoding!a} "
                                              "is not supported (send it unencoded)")


def _transfer_decoded(name: str, headers: Any, data: bytes) -> bytes:
    """A part's bytes under its Content-Transfer-Encoding (RFC 7578 deprecates it; some old clients
    still send base64 or quoted-printable parts, and judging the encoded letters reads nothing)."""
    encoding = (headers.get("Content-Transfer-Encoding") or "").strip().lower()
    if encoding in ("", "7bit", "8bit", "binary"):
        return data
    try:
        if encoding == "base64":
            return base64.b64decode(b"".join(data.split()), validate=True)
        if encoding == "quoted-printable":
            return quopri.decodestring(data)
    except (ValueError, binascii.Error):
        pass
    raise UnreadableField(name, encoding[:40])


def _too_many_fields() -> APIError:
    return TooManyFields()


def _urlencoded_pairs(raw: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    for match in re.finditer(rb"[^&]+", raw):
        if len(pairs) == MAX_FIELDS:
            raise _too_many_fields()
        name, _, value = match.group().partition(b"=")
        pairs.append((unquote_to_bytes(name.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    return pairs


def _multipart_pairs(raw: bytes) -> list[tuple[bytes, bytes]]:
    boundary = request.mimetype_params.get("boundary", "")
    try:
        marker = boundary.encode("latin-1")
    except UnicodeEncodeError:
        marker = b""
    if not marker or len(marker) > 200:
        raise APIError(400, "invalid_body", "multipart/form-data without a usable boundary parameter")
    decoder = MultipartDecoder(marker, max_parts=MAX_FIELDS)
    pairs: list[tuple[bytes, bytes]] = []
    name: str | None = None
    headers: Any = {}
    chunks: list[bytes] = []
    try:
        decoder.receive_data(raw)
        decoder.receive_data(None)
        for _ in range(4 * MAX_FIELDS + 8):  # every event consumes input: this bound is never reached
            event = decoder.next_event()
            if isinstance(event, (Field, File)):  # a parameter sent as a file is still that parameter
                name, headers, chunks = event.name, event.headers, []
            elif isinstance(event, Data):
                chunks.append(event.data)
                if not event.more_data and name is not None:
                    pairs.append((name.encode("utf-8", "replace"), _transfer_decoded(name, headers, b"".join(chunks))))
            elif isinstance(event, Epilogue):
                return pairs
    except RequestEntityTooLarge:
        raise _too_many_fields() from None
    except (ValueError, TypeError, AttributeError, IndexError, UnicodeError):
        pass
    raise APIError(400, "invalid_body", "malformed multipart/form-data body")


def _body() -> bytes:
    try:
        raw = request.get_data(cache=False)  # read and size-checked by modclf.serving.body
    except HTTPException:
        raise
    except (OSError, ValueError, EOFError) as exc:  # a server that lets framing errors reach the app
        raise APIError(400, "malformed_body", f"the request body could not be read ({type(exc).__name__})") from None
    cap = request.max_content_length
    if cap is not None and request.content_length is None and len(raw) >= cap:
        raise RequestEntityTooLarge()  # without the body guard, werkzeug truncates a chunked body at the cap
    return raw


def form_from_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Decoded fields, first occurrence of each name: ``comment_*`` values in ``blog_charset``,
    everything else in UTF-8."""
    pairs = list(pairs)
    codec = charset_codec(next((v for k, v in pairs if k == b"blog_charset"), None))
    form: dict[str, str] = {}
    for name, value in pairs:
        key = decode(name, "utf-8")
        if key not in form:
            form[key] = decode(value, codec if key.startswith("comment_") else "utf-8")
    return form


def read_form() -> dict[str, str]:
    """The request's form fields (first value of each), decoded as described in the module docstring."""
    if request.mimetype not in _FORM_TYPES:
        raise _unsupported_type()
    raw = _body()
    pairs = _multipart_pairs(raw) if request.mimetype == "multipart/form-data" else _urlencoded_pairs(raw)
    return form_from_pairs(pairs)


def small_fields(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """The urlencoded fields of a body given in chunks, skipping (unread) every field longer than
    :data:`_SMALL_FIELD_BYTES`: memory stays bounded however long the comment text is."""
    buf = bytearray()
    skipping = False
    kept = 0
    for chunk in chunks:
        start = 0
        while True:
            amp = chunk.find(b"&", start)
            if not skipping:
                buf += chunk[start:] if amp < 0 else chunk[start:amp]
                if len(buf) > _SMALL_FIELD_BYTES:
                    buf.clear()
                    skipping = True
            if amp < 0:
                break
            if buf:
                if kept == MAX_FIELDS:
                    raise _too_many_fields()
                kept += 1
                yield from _urlencoded_pairs(bytes(buf))
            buf.clear()
            skipping = False
            start = amp + 1
    if buf:
        if kept == MAX_FIELDS:
            raise _too_many_fields()
        yield from _urlencoded_pairs(bytes(buf))


def _oversize_form() -> dict[str, str]:
    """The small fields of a comment-check body above the request cap, read as it streams in."""
    if request.mimetype not in _FORM_TYPES:
        raise _unsupported_type()
    if request.mimetype == "multipart/form-data":
        raise APIError(413, "payload_too_large", f"request body larger than {request.max_content_length} bytes",
                       {"Connection": "close"})
    prefix: bytes = request.environ.get(PREFIX_KEY, b"")
    stream = request.environ["wsgi.input"]
    total = len(prefix)

    def chunks() -> Iterator[bytes]:
        nonlocal total
        yield prefix
        for chunk in read_chunks(stream, MAX_STREAMED_BYTES - len(prefix)):
            total += len(chunk)
            yield chunk

    timeout = getattr(current_app.config["MODCLF"], "body_timeout", 10)
    try:
        with deadline(timeout):
            pairs = list(small_fields(chunks()))
    except BodyTimeout:
        raise APIError(408, "request_timeout", "the request body was not received in time", {"Connection": "close"}) from None
    except TooManyFields:
        raise
    except Exception:  # the server's framing errors while the rest of the body streams in
        raise APIError(400, "malformed_body", "the request body could not be read", {"Connection": "close"}) from None
    if total > MAX_STREAMED_BYTES:
        raise APIError(413, "payload_too_large", f"request body larger than {MAX_STREAMED_BYTES} bytes",
                       {"Connection": "close"})
    return form_from_pairs(pairs)


# -- the checks every call shares -----------------------------------------------------------------

def _keys() -> KeyRing:
    return current_app.extensions["modclf_akismet_keys"]


def blog_ok(blog: str) -> bool:
    """Akismet's rule for ``blog``: a full http(s) URI, host included."""
    try:
        parts = urlsplit(blog)
    except ValueError:  # e.g. "http://[" (an unterminated IPv6 literal)
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def host_key() -> str:
    """The key of Akismet's key-as-subdomain style: the first label of the Host name ('' for an IP
    address or a single-label name)."""
    host = request.host or ""
    if host.startswith("["):  # IPv6 literal
        return ""
    hostname = host.split(":", 1)[0]
    labels = hostname.split(".")
    if len(labels) < 2 or not labels[0]:
        return ""
    try:
        ipaddress.ip_address(hostname)
        return ""
    except ValueError:
        return labels[0]


def _check_key(form: dict[str, str]) -> Response | None:
    key = form.get("api_key", "").strip() or form.get("key", "").strip()
    if key:
        return None if _keys().accepts(key) else _invalid("Invalid API key")
    subdomain = host_key()
    if subdomain and _keys().accepts(subdomain):
        return None
    if subdomain:
        return _invalid('Empty "api_key" value, and the first label of the Host name is not a valid key')
    return _invalid('Empty "api_key" value')


def _check_common(form: dict[str, str]) -> Response | None:
    """The answer to a call with a bad key, blog or IP (None when they are fine)."""
    refused = _check_key(form)
    if refused is not None:
        return refused
    blog = form.get("blog", "")
    if not blog.strip():
        return _invalid('Empty "blog" value')
    if not blog_ok(blog.strip()):
        return _invalid("We were unable to parse your blog URI (it must start with http:// or https://)")
    if not form.get("user_ip", "").strip():
        return _missing("user_ip")
    return None


def _content(form: dict[str, str]) -> str:
    """The text to judge. No length limit of its own: the body cap bounds it, and a text longer
    than the model's window is judged on the window (ServiceState.classify), never refused."""
    return plain_text(form.get("comment_content", ""))


def documented_test_verdict(form: dict[str, str]) -> str | None:
    """Akismet's documented test values: ``true``/``false`` regardless of the content, else None."""
    author = form.get("comment_author", "").strip().lower()
    email = form.get("comment_author_email", "").strip().lower()
    if author in TEST_SPAM_AUTHORS or email == TEST_SPAM_EMAIL:
        return "true"
    if form.get("user_role", "").strip().lower() == TEST_HAM_ROLE:
        return "false"
    return None


def author_plug(moderator: Any, form: dict[str, str]) -> bool:
    """The author name is a plug ("FREE MP3 DOWNLOAD www.syriamp3.com"): sites show it above the
    comment, linked to ``comment_author_url``, so it is the classic place for a link drop beside an
    innocent text. Read on its own by the model (the spam signal of the policy); the URL itself is
    not judged: a commenter's own website is ordinary, and a bare link tells the model nothing else."""
    author = form.get("comment_author", "").strip()
    if not author:
        return False
    reading = moderator.classify([author[:MAX_AUTHOR_CHARS]])[0]
    return spam_signal(reading.as_dict(), moderator.policy)


def honeypot_filled(form: dict[str, str]) -> bool:
    name = form.get("honeypot_field_name", "").strip()
    if not name or name in PARAMETERS:
        return False
    return bool(form.get(name, "").strip())


def is_test(form: dict[str, str]) -> bool:
    return form.get("is_test", "").strip().lower() in _TRUE


# -- endpoints ------------------------------------------------------------------------------------

@bp.post("/1.1/verify-key")
def verify_key() -> Response:
    form = read_form()
    key = form.get("api_key", "").strip() or form.get("key", "").strip()
    blog = form.get("blog", "").strip()
    if not key:
        return _invalid('Empty "api_key" value (the older name "key" is accepted too)')
    if not blog:
        return _invalid('Empty "blog" value')
    if not blog_ok(blog):
        return _invalid("We were unable to parse your blog URI (it must start with http:// or https://)")
    return _plain("valid") if _keys().accepts(key) else _invalid("Invalid API key")


@bp.post("/1.1/comment-check")
def comment_check() -> Response:
    oversize = bool(request.environ.get(OVERSIZE_KEY))
    try:
        form = _oversize_form() if oversize else read_form()
    except UnreadableField as exc:
        log.warning("akismet comment-check with an undecodable field: answered true (spam queue) unread")
        return _plain("true", {REASON_HEADER: f"{exc.message}: held as spam, not read"})
    except TooManyFields:
        # A refusal is "no opinion" to most clients, which then publish; and clients forward the
        # commenter's request headers as fields, so the commenter controls how many there are.
        log.warning("akismet comment-check with more than %s form fields: answered true (spam queue) unread", MAX_FIELDS)
        return _plain("true", {REASON_HEADER: f"more than {MAX_FIELDS} form fields: held as spam, not read"})
    refused = _check_common(form)
    if refused is not None:
        return refused
    verdict = documented_test_verdict(form)
    if verdict is not None:
        return _plain(verdict)
    if honeypot_filled(form):
        return _plain("true")
    if oversize:
        log.warning("akismet comment-check above the %s-byte request cap: answered true (spam queue) unread",
                    request.max_content_length)
        return _plain("true", {REASON_HEADER: f"body above the {request.max_content_length}-byte request cap: "
                                              "held as spam, not read"})
    if form.get("recheck_reason"):
        log.debug("akismet comment-check: recheck (%s)", ascii(form["recheck_reason"][:40]))
    text = _content(form)
    if not text.strip():
        return _plain("false")  # nothing to judge (e.g. a sign-up without text)
    state: ServiceState = current_app.extensions["modclf"]
    moderator = state.moderator  # one snapshot: its model and its policy decide together
    result = state.classify([text], moderator=moderator, source="akismet", story_url=form.get("permalink") or None)[0]
    policy = moderator.policy
    if spam_signal(result, policy):
        return _plain("true", {PRO_TIP_HEADER: "discard"} if result["action"] == "reject" else None)
    if author_plug(moderator, form):
        return _plain("true", {REASON_HEADER: "the author name reads as spam: held as spam for a moderator"})
    if result["action"] != "approve":
        # Not read whole, or not in a language the model reads (policy floors): the model cannot say
        # it is not spam, and "false" would publish it.
        language = result.get("language", UNDETERMINED)
        unread = moderator.conditions(bool(result.get("truncated")), language,
                                      dominant_script(text) if language == UNDETERMINED else None)
        if "unsupported_language" not in unread:
            part = moderator.foreign_part(text)  # English around a part in another language
            if part is not None:
                unread, language = (*unread, "unsupported_language"), part
        if unread:
            why = {"truncated": "longer than the model's window",
                   "unsupported_language": f"in a language the model does not read ({language})"}
            reason = " and ".join(why.get(c, c) for c in unread)
            return _plain("true", {REASON_HEADER: f"{reason}: held as spam for a moderator"})
    return _plain("false")


def submission_id(form: dict[str, str], text: str) -> str:
    """Akismet submissions carry no comment id: the digest of the fields that identify the comment,
    so the same comment submitted again (or reclassified: spam, then ham) is one decision."""
    fields = ("blog", "permalink", "comment_author", "comment_author_email", "comment_date_gmt")
    material = "\x1f".join([*(form.get(f, "") for f in fields), text])
    return "akismet:" + hashlib.sha256(material.encode("utf-8", "replace")).hexdigest()[:40]


def _submit(label: str, endpoint: str) -> Response:
    form = read_form()
    refused = _check_common(form)
    if refused is not None:
        return refused
    text = clean(_content(form))
    if not text.strip():
        return _missing("comment_content")
    if is_test(form):
        log.info("akismet %s with is_test: answered, not stored", endpoint)
        return _plain(SUBMISSION_RESPONSE)
    source = f"akismet/{endpoint} {form.get('blog', '').strip()}"
    outcome = record_or_503(get_store(), submission_id(form, text), text, label, source)
    log.info("akismet %s: decision %s", endpoint, outcome)
    return _plain(SUBMISSION_RESPONSE)


@bp.post("/1.1/submit-spam")
def submit_spam() -> Response:
    return _submit("spam", "submit-spam")


@bp.post("/1.1/submit-ham")
def submit_ham() -> Response:
    return _submit(HAM, "submit-ham")


@bp.route("/1.2/<path:name>", methods=["GET", "POST"])
def version_12(name: str) -> Response:
    """Akismet 1.2 (usage-limit, key-sites) reports the usage of an Akismet subscription."""
    raise APIError(404, "not_found", "Akismet 1.2 endpoints (usage-limit, key-sites) report the usage of an Akismet "
                   "subscription; this self-hosted classifier has no plan, call limit or per-site accounting "
                   "(call counts are in /metrics). The 1.1 endpoints are served.")
