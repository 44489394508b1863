"""One strict JSON reading for everything a user sends: request bodies and JSON Lines inputs.

Two parsers disagree on ``{"text": "<spam>", "text": "Thanks"}`` (a proxy or a dashboard may read
the first value, Python reads the last), so a duplicate key is an error, not a choice; ``NaN`` and
``Infinity`` are not JSON. Callers turn :class:`DuplicateKey` and ``ValueError`` into their own
error (an HTTP 400, a scoring error naming the line).
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKey(ValueError):
    """A JSON object names the same key twice (``key`` is the key)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice in one object")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys (:class:`DuplicateKey`) and NaN/Infinity
    (``ValueError``); raises ``json.JSONDecodeError`` and ``RecursionError`` like ``json.loads``."""
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
