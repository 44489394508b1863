"""Service configuration: defaults < ``MODCLF_*`` environment variables < the dict given to create_app.

Configuration is parsed once, at app creation, into a frozen :class:`ServiceConfig`, so a bad value
(``MODCLF_MAX_BATCH=lots``) stops the service at start with a one-line reason instead of failing the
first request that needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..model import DEFAULT_MODEL_DIR
from ..policy import DEFAULT_POLICY_PATH

ENV_PREFIX = "MODCLF_"


@dataclass(frozen=True)
class ServiceConfig:
    """All settings of the service. Each field ``x`` is read from ``MODCLF_X`` or ``config["x"]``."""

    model_dir: Path = DEFAULT_MODEL_DIR
    policy: Path = DEFAULT_POLICY_PATH
    #: request body cap in bytes (413 above it, or the integration's fail-closed verdict)
    max_body_bytes: int = 1 << 20
    #: seconds a client has to send its whole request body (gevent workers; 408 after it)
    body_timeout: int = 10
    #: the model's window, in characters (code points): longer comments are classified on their
    #: head, tail and link/contact stretches (modclf.window), flagged truncated, never auto-approved
    max_text_chars: int = 10_000
    #: most comments in one /v1/classify/batch request
    max_batch: int = 256
    #: n-grams returned by ?explain=true
    explain_top: int = 10
    #: Bearer keys for /v1/*; empty = no authentication
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Bearer keys for /v1/admin/*; empty = the api_keys
    admin_api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: settings this module does not know (for integrations), e.g. MODCLF_FEEDBACK_DB -> "feedback_db"
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def admin_keys(self) -> tuple[str, ...]:
        return self.admin_api_keys or self.api_keys


_LIMITS = {"max_body_bytes": (1024, 1 << 30), "max_text_chars": (1, 1_000_000), "max_batch": (1, 100_000),
           "explain_top": (1, 1000),
           "body_timeout": (1, 3600)}


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    low, high = _LIMITS[name]
    if not low <= number <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {number}")
    return number


def _as_keys(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{name}: expected a comma-separated string or a list of keys")
    keys = tuple(str(k).strip() for k in items if str(k).strip())
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ConfigError(f"{name}: every API key must be at least 16 characters long")
    return keys


def _convert(name: str, value: object) -> Any:
    if name in ("model_dir", "policy"):
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{name}: expected a path, got {value!r}")
        return Path(value)
    if name in _LIMITS:
        return _as_int(name, value)
    if name in ("api_keys", "admin_api_keys"):
        return _as_keys(name, value)
    raise AssertionError(name)


def load_config(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Build the configuration from the environment and ``overrides`` (keys as the field names)."""
    environ = os.environ if environ is None else environ
    known = {f.name for f in fields(ServiceConfig)} - {"extra"}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            name = key[len(ENV_PREFIX):].lower()
            if name in known:
                values[name] = raw
            else:
                extra[name] = raw
    for key, raw in (overrides or {}).items():
        name = str(key).lower()
        if name.startswith(ENV_PREFIX.lower()):
            name = name[len(ENV_PREFIX):]
        if name in known:
            values[name] = raw
        else:
            extra[name] = raw
    converted = {}
    for name, raw in values.items():
        try:
            converted[name] = _convert(name, raw)
        except ConfigError as exc:
            raise ConfigError(f"invalid setting ({ENV_PREFIX}{name.upper()}) {exc}") from None
    return ServiceConfig(**converted, extra=extra)
