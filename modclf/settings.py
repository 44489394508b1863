"""Settings: read once, typed, shared by the CLI, the service, gunicorn and the integrations.

Precedence, strongest first: command-line flags (the ``overrides`` given to :func:`load_settings`)
> environment variables > a settings file > the defaults below.

- Environment: ``MODCLF_<NAME>`` for every field (``MODCLF_MODEL_DIR``, ``MODCLF_MAX_BATCH``...),
  plus the integrations' documented names ``CORAL_SIGNING_SECRET``, ``CORAL_WEBHOOK_SECRET`` and
  ``AKISMET_API_KEYS``. An unknown ``MODCLF_*`` variable is reported (a warning naming it and the
  closest known name), never silently ignored: a typo in a limit or a key must not go unnoticed.
- Settings file: TOML, from ``$MODCLF_SETTINGS_FILE`` or ``./modclf.toml`` when present, with the
  field names as keys (``model_dir = "/srv/model"``). Unknown keys are an error.

Relative paths are relative to the current directory, so the defaults work outside a checkout:
``./model``, ``./data/comments.csv``, and the policy file shipped inside the package.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .policy import DEFAULT_POLICY_PATH

log = logging.getLogger(__name__)

ENV_PREFIX = "MODCLF_"
SETTINGS_FILE_ENV = "MODCLF_SETTINGS_FILE"
DEFAULT_SETTINGS_FILE = "modclf.toml"
SHIPPED_POLICY = DEFAULT_POLICY_PATH
#: Relative to the current directory, so they work in a checkout and outside one.
DEFAULT_MODEL_DIR = Path("model")
DEFAULT_DATA = Path("data/comments.csv")
#: Environment names kept for compatibility with the integrations' documentation.
ENV_ALIASES = {"CORAL_SIGNING_SECRET": "coral_signing_secret", "CORAL_WEBHOOK_SECRET": "coral_webhook_secret",
               "AKISMET_API_KEYS": "akismet_api_keys"}


@dataclass(frozen=True)
class Settings:
    """Every setting of modclf. Field ``x`` comes from flag/override ``x``, ``MODCLF_X`` or the file."""

    #: the model directory (model.joblib + model.json)
    model_dir: Path = DEFAULT_MODEL_DIR
    #: the moderation policy file
    policy: Path = SHIPPED_POLICY
    #: labeled training data (comma-separated in the environment)
    data: tuple[Path, ...] = (DEFAULT_DATA,)
    #: SQLAlchemy URL of the feedback store (SQLite file or PostgreSQL)
    feedback_db: str = "sqlite:///feedback.db"
    #: request body cap in bytes (413 above it, or the integration's fail-closed verdict)
    max_body_bytes: int = 1 << 20
    #: the model's window in characters; longer comments are classified on a bounded window,
    #: flagged truncated and never approved
    max_text_chars: int = 10_000
    #: most comments in one /v1/classify/batch request
    max_batch: int = 256
    #: n-grams returned by ?explain=true
    explain_top: int = 10
    #: characters of comment text one ?explain=true request may have explained (each comment counted
    #: up to max_text_chars); explanations cost ~25 us a character in a worker that serves
    #: nothing else meanwhile, so this bounds how long one request can hold it (400 above it)
    max_explain_chars: int = 40_000
    #: seconds a client has to send its whole request body (408 after it)
    body_timeout: int = 10
    #: seconds a connection has to send its request line and headers (gevent workers: 408 and closed
    #: after it; without it an idle connection holds a worker's connection slot for ever)
    header_timeout: int = 10
    #: Bearer keys for /v1/*; empty = no authentication
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Bearer keys for /v1/admin/*; empty = the api_keys
    admin_api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Coral signing secrets (several while rotating); empty = the Coral endpoint is not installed
    coral_signing_secret: tuple[str, ...] = field(default=(), repr=False)
    #: signing secrets of Coral's webhook endpoint (several while rotating); empty = the webhook
    #: receiver (/integrations/coral/webhooks) is not installed
    coral_webhook_secret: tuple[str, ...] = field(default=(), repr=False)
    #: Akismet API keys; empty = the Akismet-compatible API is not installed
    akismet_api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: secret signing the moderation console's session cookie; empty = derived from the admin
    #: keys (sessions end when the keys change), or random per server start when no key is set
    console_secret: str = field(default="", repr=False)
    #: gunicorn: address to listen on
    bind: str = "127.0.0.1:8000"
    #: gunicorn: worker processes (0 = auto: one per CPU for gevent workers, 2 x CPUs + 1 for sync
    #: and gthread workers)
    workers: int = 0
    #: gunicorn: gevent (default: slow clients hold a greenlet, not a worker), sync or gthread
    worker_class: str = "gevent"
    #: gunicorn: threads per gthread worker
    threads: int = 4
    #: gunicorn: connections one gevent/gthread worker holds at once
    worker_connections: int = 1000
    #: gunicorn: seconds before a stuck worker is replaced
    timeout: int = 30
    #: gunicorn: seconds an idle kept-alive connection stays open. 0 (default): one request per
    #: connection, so every request waits in the one accept queue that all workers serve; a kept-alive
    #: connection is pinned to one worker, and its requests wait behind that worker's other
    #: connections even when another worker is idle (bench/bench_service.py: p99 x10 under load)
    keepalive: int = 0
    #: gunicorn: write the master's pid here (for kill -HUP)
    pidfile: str = ""
    #: gunicorn: control socket path (empty = none)
    control_socket: str = ""
    #: log level of the service and the commands
    log_level: str = "info"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def admin_keys(self) -> tuple[str, ...]:
        return self.admin_api_keys or self.api_keys

    @property
    def worker_count(self) -> int:
        # gevent workers never block on a socket, so one per CPU keeps every CPU busy; more only
        # adds processes competing for the same CPUs (bench/bench_service.py, 2 CPUs: 5 workers
        # gave classify p99 37 ms, 2 workers 22 ms at higher throughput). Blocking workers (sync,
        # gthread) keep gunicorn's advice of 2 x CPUs + 1 so that some run while others wait.
        if self.workers:
            return self.workers
        cpus = os.cpu_count() or 1
        return cpus if self.worker_class == "gevent" else 2 * cpus + 1


_INT_LIMITS = {"max_body_bytes": (1024, 1 << 30), "max_text_chars": (100, 1_000_000), "max_batch": (1, 100_000),
               "explain_top": (1, 1000), "max_explain_chars": (1000, 10_000_000), "body_timeout": (1, 3600),
               "header_timeout": (1, 3600), "workers": (0, 1024), "threads": (1, 1024),
               "worker_connections": (1, 100_000), "timeout": (1, 3600), "keepalive": (0, 3600)}
_KEY_FIELDS = ("api_keys", "admin_api_keys", "akismet_api_keys", "coral_signing_secret", "coral_webhook_secret")
_CHOICES = {"worker_class": ("gevent", "sync", "gthread"), "log_level": ("debug", "info", "warning", "error")}
FIELDS = tuple(f.name for f in fields(Settings))


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    low, high = _INT_LIMITS[name]
    if not low <= number <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {number}")
    return number


def _as_list(name: str, value: object) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{name}: expected a comma-separated string or a list")
    return [str(k).strip() for k in items if str(k).strip()]


def _convert(name: str, value: object) -> Any:
    if name in ("model_dir", "policy"):
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{name}: expected a path, got {value!r}")
        return Path(value)
    if name == "data":
        paths = [Path(p) for p in _as_list(name, [value] if isinstance(value, os.PathLike) else value)]
        if not paths:
            raise ConfigError("data: expected at least one file")
        return tuple(paths)
    if name in _INT_LIMITS:
        return _as_int(name, value)
    if name in _KEY_FIELDS:
        keys = tuple(_as_list(name, value))
        # our own Bearer keys must be long; Akismet keys (12 characters at Akismet) and Coral's
        # secrets are chosen by those platforms' conventions
        if name in ("api_keys", "admin_api_keys") and any(len(k) < 16 for k in keys):
            raise ConfigError(f"{name}: every API key must be at least 16 characters long")
        if any(not k.isascii() or not k.isprintable() or " " in k for k in keys):
            # HTTP header values arrive as Latin-1 bytes: a key with other characters could never match
            raise ConfigError(f"{name}: keys and secrets must be printable ASCII without spaces")
        return keys
    text = str(value).strip()
    if name in _CHOICES:
        text = text.lower()
        if text not in _CHOICES[name]:
            raise ConfigError(f"{name}: must be one of {', '.join(_CHOICES[name])}, got {value!r}")
    if name == "feedback_db" and not text:
        raise ConfigError("feedback_db: expected an SQLAlchemy URL, e.g. sqlite:///feedback.db")
    return text


def _read_file(environ: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    explicit = environ.get(SETTINGS_FILE_ENV)
    path = Path(explicit) if explicit else Path(DEFAULT_SETTINGS_FILE)
    if not path.is_file():
        if explicit:
            raise ConfigError(f"{path}: settings file not found ({SETTINGS_FILE_ENV})")
        return {}, None
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable settings file: {exc}") from None
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    return doc, str(path)


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``MODCLF_*`` variables that name no setting, each with the closest known name if any."""
    environ = os.environ if environ is None else environ
    known = {ENV_PREFIX + f.upper() for f in FIELDS} | {SETTINGS_FILE_ENV}
    out = []
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX) and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            out.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return out


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings: defaults < file < environment < ``overrides`` (keys: field names).

    Raises :class:`~modclf.errors.ConfigError` naming the setting and where it came from. Unknown
    ``MODCLF_*`` variables are logged as warnings; unknown override keys are an error.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[Any, str]] = {}
    file_values, file_name = _read_file(environ)
    for name, value in file_values.items():
        raw[name] = (value, f"{file_name}: {name}")
    for env_name, name in ENV_ALIASES.items():
        if environ.get(env_name, "").strip():
            raw[name] = (environ[env_name], env_name)
    for name in FIELDS:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ and environ[env_name].strip() != "":
            raw[name] = (environ[env_name], env_name)
    for key, value in (overrides or {}).items():
        name = str(key).lower()
        if name.startswith(ENV_PREFIX.lower()):
            name = name[len(ENV_PREFIX):]
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r}{hint}")
        if value is not None:
            raw[name] = (value, name)
    converted = {}
    for name, (value, origin) in raw.items():
        try:
            converted[name] = _convert(name, value)
        except ConfigError as exc:
            raise ConfigError(f"invalid setting ({origin}) {exc}") from None
    for variable in unknown_environment(environ):
        if variable not in _WARNED:  # settings are read several times per process (server, app, workers)
            _WARNED.add(variable)
            log.warning("unknown environment variable %s ignored (the settings are the fields of "
                        "modclf.settings.Settings, listed in the README's Service section)", variable)
    return replace(Settings(), **converted)


#: unknown variables already reported by this process
_WARNED: set[str] = set()


__all__ = ["Settings", "load_settings", "unknown_environment", "SHIPPED_POLICY", "FIELDS"]
