"""The feedback store and its HTTP endpoints (in-process), including concurrent writers."""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import select

from modclf.feedback import (DEFAULT_FEEDBACK_DB, HAM, FeedbackError, FeedbackStore, history_table,
                             resolve_db_url)
from modclf.policy import DEFAULT_POLICY_PATH
from modclf.serving import create_app

from .integrations_support import server_env

TRICKY = 'He said "no", then left;\nnew line, comma, tab\t and émoji 🙂 =1+2'
API_KEY = "feedback-test-key-0123456789"


@pytest.fixture()
def store(tmp_path: Path) -> FeedbackStore:
    s = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    yield s
    s.close()


def test_record_is_idempotent_on_id_and_keeps_replaced_decisions(store: FeedbackStore) -> None:
    assert store.record("c1", "first text", "support", "mod:ann") == "created"
    assert store.record("c1", "first text", "support", "mod:bob") == "unchanged"
    assert store.count() == 1
    assert store.record("c1", "first text", "dispute", "mod:bob") == "updated"
    [d] = store.decisions()
    assert (d.id, d.label, d.source) == ("c1", "dispute", "mod:bob") and d.updated_at >= d.created_at
    with store.engine().connect() as conn:  # the earlier decision is kept, not lost
        [old] = conn.execute(select(history_table)).all()
    assert (old.id, old.label, old.source) == ("c1", "support", "mod:ann")


def test_record_validates(store: FeedbackStore) -> None:
    for args in (("c", "t", "bogus", "s"), ("", "t", "spam", "s"), ("c", "  ", "spam", "s"), ("x" * 257, "t", "spam", "s")):
        with pytest.raises(ValueError):
            store.record(*args)
    assert store.record("h", "not spam at all", HAM, "akismet") == "created"


def test_sqlite_store_uses_wal_and_full_sync(store: FeedbackStore) -> None:
    store.record("c1", "text", "other", "s")
    with store.engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_nothing_is_created_until_first_use(tmp_path: Path) -> None:
    s = FeedbackStore(f"sqlite:///{tmp_path / 'sub' / 'fb.db'}")
    assert not (tmp_path / "sub").exists()
    assert s.count() == 0 and (tmp_path / "sub" / "fb.db").is_file()


def test_unusable_stores_fail_with_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FeedbackError, match="not a database URL"):
        FeedbackStore("::::")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FeedbackError, match="cannot"):
        FeedbackStore(f"sqlite:///{blocker / 'fb.db'}").count()
    with pytest.raises(FeedbackError, match="cannot open") as info:
        FeedbackStore("postgresql+nosuchdriver://u:secret@127.0.0.1/db").count()
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


def test_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODCLF_FEEDBACK_DB", raising=False)
    assert resolve_db_url() == DEFAULT_FEEDBACK_DB
    monkeypatch.setenv("MODCLF_FEEDBACK_DB", "sqlite:///env.db")
    assert resolve_db_url() == "sqlite:///env.db"
    assert resolve_db_url("sqlite:///arg.db") == "sqlite:///arg.db"


def _writer(url: str, worker: int, n: int) -> None:
    store = FeedbackStore(url)
    for i in range(n):
        store.record(f"w{worker}-{i}", f"comment {i} from writer {worker}", "other", f"writer-{worker}")
        store.record("shared", f"the same comment", "spam", f"writer-{worker}")  # contended id


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"  # not created yet: the writers also race to create it
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(url, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = [d.id for d in FeedbackStore(url).decisions()]
    assert len(ids) == len(set(ids)) == 4 * 40 + 1


def test_store_survives_fork(store: FeedbackStore) -> None:
    """A store opened before a fork (gunicorn's preloaded master) works in the child on its own connection."""
    store.record("before", "written by the parent", "other", "p")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            store.record("child", "written by the child", "support", "c")
            os._exit(0 if store.count() == 2 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert {d.id for d in store.decisions()} == {"before", "child"}


# -- HTTP -----------------------------------------------------------------------------------------------

def make_app(model_dir: Path, db_url: str, **config: Any):
    with mock.patch.dict(os.environ, server_env(), clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH),
                           "feedback_db": db_url, "max_text_chars": 1000, **config})


@pytest.fixture(scope="module")
def app(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return make_app(model_dir, f"sqlite:///{tmp_path_factory.mktemp('fbapp') / 'fb.db'}")


def test_post_feedback_statuses(app) -> None:
    client = app.test_client()
    r = client.post("/v1/feedback", json={"id": "a-1", "text": "Great article", "label": "support", "source": "coral:mod-7"})
    assert r.status_code == 201 and r.get_json() == {"id": "a-1", "label": "support", "status": "created"}
    r = client.post("/v1/feedback", json={"id": "a-1", "text": "Great article", "label": "support"})
    assert r.status_code == 200 and r.get_json()["status"] == "unchanged"
    r = client.post("/v1/feedback", json={"id": "a-1", "text": "Great article", "label": "other"})
    assert r.status_code == 200 and r.get_json()["status"] == "updated"
    r = client.post("/v1/feedback", json={"id": "tricky", "text": TRICKY, "label": "dispute"})
    assert r.status_code == 201


@pytest.mark.parametrize("body,code", [
    ({"text": "t", "label": "spam"}, "missing_field"),
    ({"id": "x", "text": "t", "label": "ham"}, "invalid_label"),
    ({"id": "x", "text": "t", "label": ["spam"]}, "invalid_label"),
    ({"id": "   ", "text": "t", "label": "spam"}, "invalid_id"),
    ({"id": 5, "text": "t", "label": "spam"}, "invalid_type"),
    ({"id": "x", "text": " ", "label": "spam"}, "empty_text"),
    ({"id": "x", "text": "t", "label": "spam", "source": ""}, "invalid_source"),
    ({"id": "x", "text": "t", "label": "spam", "source": 3}, "invalid_source"),
    ({"id": "x", "text": "t", "label": "spam", "extra": 1}, "unknown_field"),
])
def test_post_feedback_rejects_bad_input(app, body: dict[str, Any], code: str) -> None:
    r = app.test_client().post("/v1/feedback", json=body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == code


def test_export_streams_every_decision_as_csv(app) -> None:
    client = app.test_client()
    store = app.extensions["modclf_feedback"]
    for i in range(1234):  # more than two export batches
        store.record(f"bulk-{i:04d}", f"bulk comment number {i}", "question", "bulk")
    r = client.get("/v1/feedback/export")
    assert r.status_code == 200 and r.mimetype == "text/csv" and r.is_streamed
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True), newline="")))
    assert list(rows[0]) == ["id", "text", "label", "source", "created_at", "updated_at"]
    assert len(rows) == store.count()
    by_id = {row["id"]: row for row in rows}
    assert by_id["tricky"]["text"] == TRICKY  # quotes, newlines, commas survive
    assert [row["id"] for row in rows if row["id"].startswith("bulk-")] == [f"bulk-{i:04d}" for i in range(1234)]
    assert client.get("/v1/feedback/export?format=json").status_code == 400


def test_store_failure_is_503_and_nothing_is_acknowledged(model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    client = make_app(model_dir, f"sqlite:///{blocker / 'fb.db'}").test_client()
    r = client.post("/v1/feedback", json={"id": "a", "text": "t", "label": "spam"})
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "feedback_unavailable" and r.headers["Retry-After"]
    r = client.get("/v1/feedback/export")
    assert r.status_code == 503


def test_api_keys_protect_the_feedback_endpoints(model_dir: Path, tmp_path: Path) -> None:
    client = make_app(model_dir, f"sqlite:///{tmp_path / 'fb.db'}", api_keys=API_KEY).test_client()
    assert client.post("/v1/feedback", json={"id": "a", "text": "t", "label": "spam"}).status_code == 401
    assert client.get("/v1/feedback/export").status_code == 401
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert client.post("/v1/feedback", json={"id": "a", "text": "t", "label": "spam"}, headers=auth).status_code == 201
    assert client.get("/v1/feedback/export", headers=auth).status_code == 200
    doc = client.get("/openapi.json").get_json()
    assert doc["paths"]["/v1/feedback"]["post"]["security"] == [{"bearerAuth": []}]


def test_openapi_documents_the_feedback_endpoints(app) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    assert {"201", "200", "400", "503"} <= set(doc["paths"]["/v1/feedback"]["post"]["responses"])
    assert "text/csv" in doc["paths"]["/v1/feedback/export"]["get"]["responses"]["200"]["content"]
    assert doc["components"]["schemas"]["FeedbackRequest"]["required"] == ["id", "text", "label"]


def test_default_store_is_not_created_by_merely_starting(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with mock.patch.dict(os.environ, server_env(), clear=True):
        app = create_app({"model_dir": str(model_dir)})
    assert app.extensions["modclf_feedback"].url == DEFAULT_FEEDBACK_DB
    assert not (tmp_path / "feedback.db").exists()


# -- modclf feedback export: a read-only command ------------------------------------------------------


def test_export_refuses_a_sqlite_store_that_does_not_exist_and_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from modclf.cli import main

    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    assert main(["feedback", "export", "--feedback-db", f"sqlite:///{missing}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no feedback store at {missing} ")
    assert not (tmp_path / "nonexistent").exists()
    # the default store (./feedback.db) in a directory that has none
    for name in ("MODCLF_FEEDBACK_DB", "MODCLF_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["feedback", "export"]) == 2
    assert capsys.readouterr().err.startswith("error: no feedback store at feedback.db ")
    assert list(tmp_path.iterdir()) == []


def test_export_into_a_missing_directory_is_an_error(store: FeedbackStore, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from modclf.cli import main

    store.record("c1", TRICKY, "support", "mod:ann")
    db = ["--feedback-db", f"sqlite:///{tmp_path / 'fb.db'}"]
    out = tmp_path / "missing" / "x.csv"
    assert main(["feedback", "export", "-o", str(out), *db]) == 2
    assert capsys.readouterr().err == f"error: {out}: the directory {out.parent} does not exist\n"
    assert not out.parent.exists()
    assert main(["feedback", "export", "-o", str(tmp_path / "x.csv"), *db]) == 0  # an existing store exports
    rows = list(csv.DictReader(io.StringIO((tmp_path / "x.csv").read_text(encoding="utf-8"), newline="")))
    assert [(r["id"], r["text"], r["label"]) for r in rows] == [("c1", TRICKY, "support")]


# -- namespaces the service writes itself ----------------------------------------------------------------


@pytest.mark.parametrize("body,code", [
    ({"id": "queue:1"}, "reserved_id"),
    ({"id": "QUEUE:7", "source": "api"}, "reserved_id"),
    ({"id": "\uff51ueue:1"}, "reserved_id"),  # full-width q
    ({"id": "akismet:0123abcd"}, "reserved_id"),
    ({"id": "mine", "source": "queue/console"}, "reserved_source"),
    ({"id": "mine", "source": " Akismet/submit-ham blog"}, "reserved_source"),
])
def test_post_feedback_refuses_the_services_own_ids_and_sources(app, body: dict[str, Any], code: str) -> None:
    r = app.test_client().post("/v1/feedback", json={"text": "forged", "label": "support", **body})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == code
    assert "written only by the service" in r.get_json()["error"]["message"]
    assert not any(d.text == "forged" for d in app.extensions["modclf_feedback"].decisions())


@pytest.mark.parametrize("comment_id,source", [("queue-1", "api"), ("my-queue:1", "queue"), ("akismet", "coral:mod-ann"),
                                               ("q:1", "queues/a")])
def test_post_feedback_accepts_ids_and_sources_near_the_reserved_ones(app, comment_id: str, source: str) -> None:
    r = app.test_client().post("/v1/feedback", json={"id": comment_id, "text": "fine", "label": "other", "source": source})
    assert r.status_code in (200, 201), r.get_data(as_text=True)


def test_reserved_prefixes_are_the_ones_the_service_writes() -> None:
    """If the queue or Akismet changes its ids or sources, the reservation must follow."""
    from modclf.queue import FEEDBACK_ID_PREFIX, FEEDBACK_SOURCE_PREFIX
    from modclf.serving.feedback_api import RESERVED_ID_PREFIXES, RESERVED_SOURCE_PREFIXES, reserved_prefix
    from modclf.serving.integrations.akismet import submission_id

    assert reserved_prefix(f"{FEEDBACK_ID_PREFIX}12", RESERVED_ID_PREFIXES)
    assert reserved_prefix(f"{FEEDBACK_SOURCE_PREFIX}coral", RESERVED_SOURCE_PREFIXES)
    assert reserved_prefix(submission_id({"blog": "https://b.example"}, "text"), RESERVED_ID_PREFIXES)
    assert reserved_prefix("akismet/submit-spam https://b.example", RESERVED_SOURCE_PREFIXES)


def test_openapi_documents_the_reserved_namespaces(app) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    assert "reserved_id" in doc["paths"]["/v1/feedback"]["post"]["responses"]["403"]["description"]
