"""The feedback store on a real PostgreSQL server (the multi-instance configuration).

A throwaway cluster is created with the machine's PostgreSQL binaries (initdb, pg_ctl) in a temporary
directory, listening on a Unix socket only (no TCP port), and removed afterwards. Skipped where
PostgreSQL or the psycopg driver is not installed.
"""

from __future__ import annotations

import csv
import glob
import io
import multiprocessing
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator
from unittest import mock

import pytest

from modclf.feedback import FeedbackStore
from modclf.policy import DEFAULT_POLICY_PATH
from modclf.serving import create_app

from .integrations_support import server_env

pytestmark = pytest.mark.slow
pytest.importorskip("psycopg", reason="the psycopg driver is not installed")


def _pg_bin() -> Path | None:
    """The directory of initdb and pg_ctl (Debian keeps them out of PATH), or None."""
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{directory}/initdb") and os.path.exists(f"{directory}/pg_ctl"):
            return Path(directory)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(initdb).parent if initdb and pg_ctl else None


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    # its own directory under /tmp: pytest's temporary directories are private to this user
    base = Path(tempfile.mkdtemp(prefix="modclf-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and there is no postgres user to run the server")
        for path in (base, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    base.chmod(0o755)

    def run(*cmd: str) -> None:
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "modclf", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(base / "pg.log"),
            "-o", f"-c listen_addresses='' -c unix_socket_directories={sock}", "start")
        yield f"postgresql+psycopg://modclf@/postgres?host={sock}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _writer(url: str, worker: int, n: int) -> None:
    store = FeedbackStore(url)
    for i in range(n):
        store.record(f"pg-w{worker}-{i}", f"comment {i} from writer {worker}", "other", f"writer-{worker}")
        store.record("pg-shared", "the same comment", "spam", f"writer-{worker}")  # contended id


def test_store_semantics_on_postgresql(pg_url: str) -> None:
    store = FeedbackStore(pg_url)
    assert store.record("pg-1", "first", "support", "a") == "created"
    assert store.record("pg-1", "first", "support", "b") == "unchanged"
    assert store.record("pg-1", "first", "dispute", "b") == "updated"
    assert [(d.id, d.label) for d in store.decisions() if d.id == "pg-1"] == [("pg-1", "dispute")]
    store.close()


def test_concurrent_writers_on_postgresql_lose_nothing(pg_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(pg_url, w, 30)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = [d.id for d in FeedbackStore(pg_url).decisions() if d.id.startswith("pg-w") or d.id == "pg-shared"]
    assert len(ids) == len(set(ids)) == 4 * 30 + 1


def test_two_service_instances_share_one_store(pg_url: str, model_dir: Path) -> None:
    def instance():
        with mock.patch.dict(os.environ, server_env(MODCLF_FEEDBACK_DB=pg_url), clear=True):
            return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH)}).test_client()

    a, b = instance(), instance()
    r = a.post("/v1/feedback", json={"id": "pg-shared-app", "text": "Written through instance A", "label": "question"})
    assert r.status_code == 201
    assert b.post("/v1/feedback", json={"id": "pg-shared-app", "text": "Written through instance A",
                                        "label": "question"}).get_json()["status"] == "unchanged"
    rows = list(csv.DictReader(io.StringIO(b.get("/v1/feedback/export").get_data(as_text=True), newline="")))
    assert {"id": "pg-shared-app", "label": "question"}.items() <= next(r for r in rows if r["id"] == "pg-shared-app").items()
