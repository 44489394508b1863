"""The one request-body guard: every body is read here, whole and bounded, before any view runs.

Why a WSGI middleware and not ``request.get_data()`` in each view:

- malformed framing (a bad chunk size, a missing chunk terminator, a body shorter than its
  Content-Length) makes the server's input stream raise in the middle of a view, where it would
  become a 500; read here, it becomes a 400 that names the problem;
- a chunked body has no Content-Length, so werkzeug truncates it at the cap instead of refusing it;
  here it is counted and refused like any other;
- under gevent workers a client that trickles its body is given ``body_timeout`` seconds in all,
  then answered 408, so slow clients cannot pin memory and connections forever.

Nothing is answered from here: the outcome is left in the WSGI environ and the app turns it into
its usual JSON error (or, for the paths that must always give a platform a verdict, into that
verdict: see :data:`VERDICT_ON_OVERSIZE`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger(__name__)

#: environ keys set by :class:`BodyGuard`
ERROR_KEY = "modclf.body_error"      # (status, code, message): answer this instead of running the view
OVERSIZE_KEY = "modclf.oversize"     # True: the body is above the cap; the view gives its fail-closed verdict
PREFIX_KEY = "modclf.body_prefix"    # the bytes of an oversize body already read (the rest is unread)

CHUNK = 64 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BodyTimeout(Exception):
    """The client did not send its whole body in time."""


def _gevent_active() -> bool:
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


def deadline(seconds: float) -> contextlib.AbstractContextManager[Any]:
    """Raise :class:`BodyTimeout` in this greenlet after ``seconds`` (gevent workers only; sync
    workers are bounded by gunicorn's own worker timeout)."""
    if seconds > 0 and _gevent_active():
        import gevent

        return gevent.Timeout(seconds, BodyTimeout)
    return contextlib.nullcontext()


def read_chunks(stream: Any, limit: int, *, stop_at_limit: bool = False) -> Iterator[bytes]:
    """Read ``stream`` in chunks until EOF or until more than ``limit`` bytes were read (exactly
    ``limit`` bytes with ``stop_at_limit``, for a body whose length is known)."""
    total = 0
    while total < limit if stop_at_limit else total <= limit:
        chunk = stream.read(min(CHUNK, limit - total if stop_at_limit else limit + 1 - total))
        if not chunk:
            return
        total += len(chunk)
        yield chunk


class BodyGuard:
    """WSGI middleware: buffer each request body (at most ``max_bytes``) or record why it could not.

    ``verdict_paths(environ)`` says whether an oversize body on this request should reach the view
    (which then answers with its fail-closed verdict) instead of being refused with 413.
    """

    def __init__(self, app: WSGIApp, max_bytes: int, *, body_timeout: float = 10.0,
                 verdict_paths: Callable[[str], bool] = lambda path: False):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.verdict_paths = verdict_paths

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self._buffer(environ)
        return self.app(environ, start_response)

    def _buffer(self, environ: dict[str, Any]) -> None:
        codings = [c.strip() for c in environ.get("HTTP_TRANSFER_ENCODING", "").lower().split(",") if c.strip()]
        if codings and codings != ["chunked"]:
            # gunicorn answers 501 itself for most unknown codings, but passes "gzip, chunked" on with
            # only the chunking undone: the view would read compressed bytes as the comment
            environ[ERROR_KEY] = (501, "unsupported_transfer_coding",
                                  f"transfer coding {', '.join(codings)!r} is not implemented; send the body "
                                  "with Content-Length or Transfer-Encoding: chunked")
            return
        chunked = bool(codings)
        raw_length = environ.get("CONTENT_LENGTH", "")
        if not chunked:
            if raw_length in ("", "0"):
                return
            try:
                length = int(raw_length)
                if length < 0:
                    raise ValueError
            except ValueError:
                environ[ERROR_KEY] = (400, "invalid_content_length", "Content-Length is not a non-negative integer")
                return
            if length > self.max_bytes:
                self._oversize(environ, b"")
                return
        stream = environ["wsgi.input"]
        parts: list[bytes] = []
        size = 0
        # with a Content-Length, read exactly that much: some servers' input streams (werkzeug's
        # development server) do not end at the body's end but block for the next request
        limit = self.max_bytes if chunked else int(raw_length)
        try:
            with deadline(self.body_timeout):
                for chunk in read_chunks(stream, limit, stop_at_limit=not chunked):
                    parts.append(chunk)
                    size += len(chunk)
        except BodyTimeout:
            environ[ERROR_KEY] = (408, "request_timeout", f"the request body was not received within {self.body_timeout:g} s")
            return
        except Exception as exc:  # the server's parser: bad chunk size, missing terminator, early EOF
            log.info("malformed request body: %s: %r", type(exc).__name__, str(exc)[:200])
            environ[ERROR_KEY] = (400, "malformed_body", f"the request body could not be read ({type(exc).__name__}): "
                                  "check Content-Length and chunked transfer encoding")
            return
        body = b"".join(parts)
        if size > self.max_bytes:
            self._oversize(environ, body)
            return
        if not chunked and size != int(raw_length):  # servers that do not check it themselves
            environ[ERROR_KEY] = (400, "malformed_body", f"the request body has {size} bytes, Content-Length says {raw_length}")
            return
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(size)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True

    def _oversize(self, environ: dict[str, Any], prefix: bytes) -> None:
        if self.verdict_paths(environ.get("PATH_INFO", "")):
            environ[OVERSIZE_KEY] = True
            environ[PREFIX_KEY] = prefix
        else:
            environ[ERROR_KEY] = (413, "payload_too_large", f"request body larger than {self.max_bytes} bytes")
