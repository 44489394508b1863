"""The Akismet-compatible API driven by published npm Akismet clients against real gunicorn.

A second ecosystem besides the Python `akismet` package (tests/test_integrations_akismet.py):

- ``akismet-api`` (chrisfosterelli; the client The Coral Project uses): verify-key with the older
  ``key`` field at ``<host>/1.1/``, every other call in Akismet's key-as-subdomain style
  (``http://<key>.<host>/1.1/comment-check``, no key in the body);
- ``@cedx/akismet``: a base URL, ``api_key`` in the body of every call (verify-key included),
  ``comment_context[N]`` arrays, ``recheck_reason``, and it treats any ``X-akismet-debug-help``
  header as an error, so it also checks that verdicts never carry one.

The clients are installed with ``npm ci`` from tests/node/package.json and package-lock.json (exact
versions): ``make node-clients`` installs them in tests/node/node_modules, else this module does it
in a temporary directory (network or npm cache needed). tests/node/drive.mjs calls them and prints
what each call returned. Skipped only when node or npm is not installed.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from modclf.policy import DEFAULT_POLICY_PATH

from .integrations_support import Server, start_server

pytestmark = pytest.mark.slow

NODE_PROJECT = Path(__file__).resolve().parent / "node"
KEY = "a1b2c3d4e5f6"  # lowercase: akismet-api sends it as a DNS label, which URL parsers lowercase
BLOG = "https://news.example.org/"
SUBMISSION = "Thanks for making the web a better place."


def installed_as_locked(project: Path) -> bool:
    """tests/node/node_modules holds exactly the locked versions (``make node-clients`` ran)."""
    hidden = project / "node_modules" / ".package-lock.json"
    if not hidden.is_file():
        return False
    locked = json.loads((project / "package-lock.json").read_text())["packages"]
    present = json.loads(hidden.read_text())["packages"]
    return all(present.get(path, {}).get("version") == entry.get("version") for path, entry in locked.items() if path)


@pytest.fixture(scope="module")
def node_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with drive.mjs and the locked clients installed: tests/node itself when `make
    node-clients` installed them there, else a temporary copy installed now with `npm ci`."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed to install the npm Akismet clients of tests/node/package.json")
    if installed_as_locked(NODE_PROJECT):
        return NODE_PROJECT
    work = tmp_path_factory.mktemp("node-clients")
    for name in ("package.json", "package-lock.json", "drive.mjs"):
        shutil.copy(NODE_PROJECT / name, work / name)
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return work


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("akismet-node")
    srv = start_server("gunicorn", work / "gunicorn.log", {
        "MODCLF_MODEL_DIR": str(model_dir), "MODCLF_POLICY": str(DEFAULT_POLICY_PATH),
        "MODCLF_FEEDBACK_DB": f"sqlite:///{work / 'feedback.db'}", "AKISMET_API_KEYS": f"{KEY},0f9e8d7c6b5a"})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def results(node_project: Path, server: Server) -> dict[str, Any]:
    proc = subprocess.run([shutil.which("node") or "node", "drive.mjs", f"{server.url}/akismet/", KEY, BLOG],
                          cwd=node_project, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"drive.mjs failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def ok(outcome: dict[str, Any]) -> Any:
    assert outcome["ok"], outcome
    return outcome["value"]


def test_akismet_api_key_as_subdomain_client(results: dict[str, Any]) -> None:
    r = results["akismetApi"]
    assert ok(r["verifyKey"]) is True and ok(r["verifyWrongKey"]) is False  # `key` in the body
    assert ok(r["checkSpam"]) is True  # the link drop
    assert ok(r["checkHam"]) is False  # an ordinary comment
    assert r["checkWrongKey"] == {"ok": False, "error": "Invalid API key"}  # the client's reading of "invalid"
    assert ok(r["checkGuaranteedSpam"]) is True  # Akismet's test values
    assert ok(r["checkAdministrator"]) is False
    assert ok(r["checkHoneypot"]) is True  # a filled honeypot field
    assert ok(r["checkEmptyHoneypot"]) is False
    assert ok(r["submitSpam"]) == SUBMISSION and ok(r["submitHam"]) == SUBMISSION and ok(r["submitTest"]) == SUBMISSION


def test_cedx_base_url_client(results: dict[str, Any]) -> None:
    r = results["cedx"]
    assert ok(r["verifyKey"]) is True and ok(r["verifyWrongKey"]) is False  # `api_key` in the body
    assert ok(r["checkSpam"]) == "pervasiveSpam"  # true + X-akismet-pro-tip: discard
    assert ok(r["checkHam"]) == "ham"
    assert ok(r["checkRecheck"]) == "ham"
    assert r["checkWrongKey"] == {"ok": False, "error": "Invalid API key"}  # from X-akismet-debug-help
    ok(r["submitSpam"])  # the client checks the "Thanks ..." answer itself
    ok(r["submitHam"])


def test_node_submissions_are_stored(results: dict[str, Any], server: Server) -> None:
    r = requests.get(f"{server.url}/v1/feedback/export", timeout=30)
    assert r.status_code == 200
    rows = {row["text"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert rows["Cheap essays written for you, message me on telegram @essaypro99"]["label"] == "spam"
    assert rows["My cousin runs the bakery on Main Street and it closed last week, sad news."]["label"] == "ham"
    assert rows["Buy followers cheap, DM me on whatsapp +1 555 0100 now"]["label"] == "spam"
    assert rows["The council vote is on Tuesday, the agenda is on their site."]["label"] == "ham"
    assert all(row["source"] == f"akismet/submit-{row['label']} {BLOG}" for row in rows.values())
    assert "node test only spam" not in rows  # is_test: answered, not stored
