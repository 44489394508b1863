"""An acknowledged decision survives ``kill -9`` of the real server (gunicorn and serve.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import requests

from modclf.policy import DEFAULT_POLICY_PATH

from .integrations_support import start_server

pytestmark = pytest.mark.slow
N = 30


@pytest.mark.parametrize("kind", ["gunicorn", "serve.py"])
def test_acknowledged_feedback_survives_kill_9(kind: str, model_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "feedback.db"
    env = {"MODCLF_MODEL_DIR": str(model_dir), "MODCLF_POLICY": str(DEFAULT_POLICY_PATH),
           "MODCLF_FEEDBACK_DB": f"sqlite:///{db}"}
    server = start_server(kind, tmp_path / "server.log", env)
    acknowledged = []
    try:
        for i in range(N):
            body = {"id": f"k-{i}", "text": f"decision number {i} before the crash", "label": "other",
                    "source": "durability-test"}
            r = requests.post(f"{server.url}/v1/feedback", json=body, timeout=30)
            assert r.status_code == 201, r.text
            acknowledged.append(body["id"])
    finally:
        server.kill9()  # no shutdown hook, no flush, no close: only what was committed remains
    assert server.proc.returncode is not None

    # the database file alone (a fresh reader, no server) has every acknowledged decision
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM feedback")}
    assert stored == set(acknowledged)

    # and a new server on the same store serves them and keeps accepting writes
    server = start_server(kind, tmp_path / "server2.log", env)
    try:
        export = requests.get(f"{server.url}/v1/feedback/export", timeout=30)
        assert export.status_code == 200
        assert sum(1 for line in export.text.splitlines()[1:] if line.startswith("k-")) == N
        again = requests.post(f"{server.url}/v1/feedback", timeout=30,
                              json={"id": "k-0", "text": "decision number 0 before the crash", "label": "other"})
        assert again.status_code == 200 and again.json()["status"] == "unchanged"
    finally:
        server.stop()
