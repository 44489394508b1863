"""Optional Bearer API keys (``MODCLF_API_KEYS``, ``MODCLF_ADMIN_API_KEYS``).

When keys are configured, every ``/v1/`` path needs ``Authorization: Bearer <key>``; ``/v1/admin/``
and the review queue (``/v1/queue``...) need an admin key (the API keys when no admin keys are set). Health, readiness, metrics and
the OpenAPI document stay open, for load balancers and scrapers. Keys are compared as SHA-256
digests with ``hmac.compare_digest``, so timing reveals neither a key nor its length.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable

from flask import request

from .errors import APIError

PROTECTED_PREFIX = "/v1/"
ADMIN_PREFIX = "/v1/admin/"
#: paths that need an admin key: administration and the moderators' review queue
ADMIN_PREFIXES = (ADMIN_PREFIX, "/v1/queue")


def is_admin_path(path: str) -> bool:
    return path.startswith(ADMIN_PREFIXES)


class KeyRing:
    """A set of accepted keys, kept only as digests."""

    def __init__(self, keys: Iterable[str]):
        self._digests = tuple(hashlib.sha256(k.encode("utf-8")).digest() for k in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        return self.accepts_digest(hashlib.sha256(key.encode("utf-8", "replace")).digest())

    def accepts_digest(self, digest: bytes) -> bool:
        """Whether ``digest`` is the SHA-256 of an accepted key (the console keeps only that)."""
        ok = False
        for d in self._digests:  # no early exit: constant work whichever key matches
            ok |= hmac.compare_digest(d, digest)
        return ok


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_request(api_keys: KeyRing, admin_keys: KeyRing) -> None:
    """Raise 401 when the request's path is protected and it carries no accepted key."""
    path = request.path
    if not path.startswith(PROTECTED_PREFIX):
        return
    ring = admin_keys if is_admin_path(path) else api_keys
    if not ring:
        return
    token = bearer_token()
    if token is None:
        raise APIError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'",
                       {"WWW-Authenticate": 'Bearer realm="modclf"'})
    if not ring.accepts(token):
        raise APIError(401, "unauthorized", "invalid API key",
                       {"WWW-Authenticate": 'Bearer realm="modclf", error="invalid_token"'})
