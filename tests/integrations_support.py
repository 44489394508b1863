"""Helpers for the integration and feedback tests: real servers on loopback, Coral-style signing."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import requests

ROOT = Path(__file__).resolve().parent.parent
#: Variables of the integrations that must not leak from the developer's shell into a test server.
_OWN_VARS = ("MODCLF_", "_MODCLF_", "PROMETHEUS_", "CORAL_SIGNING_SECRET", "AKISMET_API_KEYS")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARS)}
    env.update(extra)
    return env


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kill9(self) -> None:
        """SIGKILL every process of the server (gunicorn master and workers): no clean-up runs."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def start_server(kind: str, log: Path, env: dict[str, str], timeout: float = 90.0) -> Server:
    """Start ``gunicorn`` (modclf.gunicorn_conf, 2 workers) or ``serve.py`` on a free loopback port."""
    port = free_port()
    env = server_env(**env)
    if kind == "gunicorn":
        env.update(MODCLF_BIND=f"127.0.0.1:{port}", MODCLF_WORKERS=env.get("MODCLF_WORKERS", "2"),
                   MODCLF_LOG_LEVEL="warning")
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:modclf.gunicorn_conf", "modclf.serving:create_app()"]
    else:
        cmd = [sys.executable, "serve.py", "--dev", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    with open(log, "w") as err:  # a file, not a pipe nobody reads: a full pipe would block the server
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # its own process group, for kill9()
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.kill9()
    raise AssertionError(f"server not ready after {timeout}s: {log.read_text()[-2000:]}")


# -- Coral --------------------------------------------------------------------------------------------

def coral_body(data: Any) -> bytes:
    """The body as Coral sends it: ``JSON.stringify(request, null, 2)`` (2-space indent, ``": "``
    after keys, non-ASCII as is), UTF-8."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def coral_signature(body: bytes, secrets: Iterable[str]) -> str:
    """The X-Coral-Signature header as Coral's generateSignatures builds it: one
    ``sha256=<hex HMAC-SHA256 of the body>`` per active secret, joined with ``,``."""
    return ",".join("sha256=" + hmac.new(s.encode("utf-8"), body, hashlib.sha256).hexdigest() for s in secrets)


def coral_headers(body: bytes, secrets: Iterable[str]) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "Coral Moderation/9.7.0",
            "X-Coral-Signature": coral_signature(body, secrets)}


def coral_request(text: str, *, action: str = "NEW", parent: str | None = None) -> dict[str, Any]:
    """An External Moderation Request shaped as in Coral's documentation."""
    return {
        "action": action,
        "comment": {"body": text, "parentID": parent},
        "author": {"id": "baf4e943-3594-4fcc-b2ba-3e8de7a76352", "role": "COMMENTER"},
        "story": {"id": "245b3856-b0a0-4d2f-a6bb-58c71f18d6a6", "url": "http://localhost:1313/posts/a-story-url/"},
        "site": {"id": "a4bede88-2d2c-4424-bc18-4322a9e285a6"},
        "tenantID": "19ba5794-7eeb-4d46-a81b-c00c61672501",
        "tenantDomain": "localhost",
    }


CORAL_STATUSES = {"NONE", "APPROVED", "REJECTED", "PREMOD", "SYSTEM_WITHHELD"}
CORAL_REASONS = {"COMMENT_DETECTED_TOXIC", "COMMENT_DETECTED_SPAM"}
CORAL_TAGS = {"FEATURED", "STAFF"}


def assert_valid_coral_response(obj: Any) -> None:
    """Coral's documented ExternalModerationResponse: optional actions (FLAG + a documented
    reason), optional status (documented values), optional tags; nothing else."""
    assert isinstance(obj, dict)
    assert set(obj) <= {"actions", "status", "tags"}, obj
    if "status" in obj:
        assert obj["status"] in CORAL_STATUSES, obj
    for action in obj.get("actions", []):
        assert set(action) == {"actionType", "reason"}, action
        assert action["actionType"] == "FLAG" and action["reason"] in CORAL_REASONS, action
    for tag in obj.get("tags", []):
        assert tag in CORAL_TAGS


# -- comments -------------------------------------------------------------------------------------

LINK_DROP = ("Make $5000 a week from home!!! Click here www.easy-cash-now.com and sign up today, "
             "limited offer, visit www.easy-cash-now.com")
ORDINARY = "Thanks for the report, very helpful."
DISPUTE = "This is simply false, the author clearly has no idea what he is talking about."
