"""The review queue: held comments recorded from every endpoint, listed, decided, and written into
the feedback store (SQLite here; PostgreSQL in test_queue_postgres.py)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from modclf.errors import FeedbackError
from modclf.feedback import FeedbackStore
from modclf.labels import LABELS
from modclf.queue import LabelRequired, ReviewQueue, decode_cursor, feedback_label
from modclf.serving import create_app

from .integrations_support import coral_body, coral_headers, coral_request

SPAM = "Earn $500 a day from home!!! Click www.easy-cash-now.com and sign up today, limited offer"
QUESTION = "Does anyone know which town this was filmed in? The article does not say."
DISPUTE = "This is simply false, the author clearly has no idea what he is talking about."
#: every comment is held for review under this policy
REVIEW_ALL = "labels:\n  spam:\n    - {at_least: 0.0, action: review}\ndefault: review\n"
ADMIN, KEY = "a" * 32, "k" * 32
CORAL_SECRET = "coral-secret-for-queue-tests"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MODCLF_", "CORAL_", "AKISMET_"))}


def make_app(model_dir: Path, tmp_path: Path, *, policy: str = REVIEW_ALL, db: str | None = None, **config: Any):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy)
    with mock.patch.dict(os.environ, clean_env(), clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(policy_file),
                           "feedback_db": db or f"sqlite:///{tmp_path / 'store.db'}", **config})


@pytest.fixture()
def app(model_dir: Path, tmp_path: Path):
    return make_app(model_dir, tmp_path)


@pytest.fixture()
def client(app):
    return app.test_client()


def queue_items(client, **query: Any) -> dict[str, Any]:
    r = client.get("/v1/queue", query_string=query)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def decide(client, item_id: int, **body: Any):
    return client.post(f"/v1/queue/{item_id}/decision", json=body)


def export_rows(client) -> list[dict[str, str]]:
    r = client.get("/v1/feedback/export")
    assert r.status_code == 200
    return list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))


# -- recording ------------------------------------------------------------------------------------


def test_held_comments_from_classify_and_batch_are_queued_with_their_context(client, app) -> None:
    one = client.post("/v1/classify", json={"text": DISPUTE, "id": "c-1"}).get_json()
    assert one["action"] == "review"
    batch = client.post("/v1/classify/batch", json={"comments": [{"id": "b-1", "text": QUESTION}, {"text": SPAM}]})
    assert batch.status_code == 200
    body = queue_items(client)
    assert body["pending"] == 3 and body["count"] == 3 and body["next_cursor"] is None
    first, second, third = body["items"]  # oldest first
    assert (first["text"], first["client_id"], first["source"]) == (DISPUTE, "c-1", "v1/classify")
    assert (second["client_id"], second["source"]) == ("b-1", "v1/classify/batch")
    assert third["client_id"] is None and third["label"] == "spam"
    for item, verdict in ((first, one), (second, batch.get_json()["results"][0])):
        for key in ("label", "confidence", "action", "truncated", "model_version", "policy_version"):
            assert item[key] == verdict[key], key
        assert item["probabilities"] == pytest.approx(verdict["probabilities"], abs=1e-12)
        assert list(item["probabilities"]) == list(LABELS)
        assert item["status"] == "pending" and item["created_at"].endswith("+00:00")


def test_approved_and_rejected_comments_are_not_queued(model_dir: Path, tmp_path: Path) -> None:
    from modclf.policy import DEFAULT_POLICY_PATH

    client = make_app(model_dir, tmp_path, policy=DEFAULT_POLICY_PATH.read_text()).test_client()
    assert client.post("/v1/classify", json={"text": SPAM}).get_json()["action"] == "reject"
    assert client.post("/v1/classify", json={"text": QUESTION}).get_json()["action"] == "approve"
    assert queue_items(client)["pending"] == 0


def test_a_pending_comment_sent_again_is_queued_once(client) -> None:
    for _ in range(3):
        client.post("/v1/classify", json={"text": DISPUTE, "id": "same"})
    client.post("/v1/classify", json={"text": DISPUTE, "id": "other"})  # another comment with the same text
    assert [i["client_id"] for i in queue_items(client)["items"]] == ["same", "other"]


def test_coral_comments_are_queued_with_their_story(model_dir: Path, tmp_path: Path) -> None:
    client = make_app(model_dir, tmp_path, coral_signing_secret=CORAL_SECRET).test_client()
    body = coral_body(coral_request(DISPUTE))
    r = client.post("/integrations/coral", data=body, headers=coral_headers(body, [CORAL_SECRET]))
    assert r.status_code in (200, 204)
    (item,) = queue_items(client)["items"]
    assert item["source"] == "coral" and item["story_url"] == "http://localhost:1313/posts/a-story-url/"


def test_a_failing_queue_never_fails_the_verdict(client, app, caplog) -> None:
    queue = app.extensions["modclf_queue"]
    with mock.patch.object(queue, "record", side_effect=FeedbackError("database is locked")):
        app.extensions["modclf"].recorder = queue.record
        r = client.post("/v1/classify", json={"text": DISPUTE})
    assert r.status_code == 200 and r.get_json()["action"] == "review"
    assert "not queued" in caplog.text and "database is locked" in caplog.text
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "modclf_queue_record_failures_total 1.0" in metrics


def test_an_unreachable_database_is_logged_and_the_verdict_answered(model_dir: Path, tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the database's directory should be
    client = make_app(model_dir, tmp_path, db=f"sqlite:///{blocker}/sub/store.db").test_client()
    r = client.post("/v1/classify", json={"text": DISPUTE})
    assert r.status_code == 200 and r.get_json()["action"] == "review"
    client.application.extensions["modclf_queue"].writer.flush()  # held comments are written off the request path
    assert "not queued" in caplog.text
    assert client.get("/v1/queue").status_code == 503


# -- listing --------------------------------------------------------------------------------------


def test_order_filters_and_pagination(client) -> None:
    texts = [DISPUTE, QUESTION, SPAM, "Thank you for this, really good work!", "I think the numbers are wrong here",
             "what?", "ok then", "Where can I read the full report?"]
    client.post("/v1/classify/batch", json={"comments": [{"text": t} for t in texts]})
    everything = queue_items(client, limit=200)["items"]
    assert [i["text"] for i in everything] == texts
    # most uncertain first: smallest gap between the two most probable labels
    uncertain = queue_items(client, order="uncertain", limit=200)["items"]

    def gap(item: dict[str, Any]) -> float:
        top = sorted(item["probabilities"].values(), reverse=True)
        return top[0] - top[1]
    assert [gap(i) for i in uncertain] == sorted(gap(i) for i in everything)
    # cursor pages walk the whole queue in order, for both orders
    for order, expected in (("oldest", everything), ("uncertain", uncertain)):
        seen, cursor = [], None
        while True:
            page = queue_items(client, order=order, limit=3, **({"cursor": cursor} if cursor else {}))
            assert page["pending"] == len(texts)
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [i["id"] for i in seen] == [i["id"] for i in expected]
    assert [i["id"] for i in queue_items(client, offset=6)["items"]] == [i["id"] for i in everything[6:]]
    # filters
    by_label = queue_items(client, label="spam")
    assert by_label["items"] and all(i["label"] == "spam" for i in by_label["items"])
    assert by_label["pending"] == sum(i["label"] == "spam" for i in everything)
    assert queue_items(client, source="coral")["pending"] == 0
    assert queue_items(client, source="v1/classify/batch")["pending"] == len(texts)


def test_a_cursor_survives_decisions_made_meanwhile(client) -> None:
    client.post("/v1/classify/batch", json={"comments": [{"text": f"{DISPUTE} ({i})"} for i in range(5)]})
    page = queue_items(client, limit=2)
    ids = [i["id"] for i in page["items"]]
    decide(client, ids[0], action="approve")  # someone else works the queue
    rest = queue_items(client, limit=10, cursor=page["next_cursor"])
    assert [i["id"] for i in rest["items"]] == [ids[1] + 1, ids[1] + 2, ids[1] + 3]


@pytest.mark.parametrize("query", ["order=newest", "label=ham", "limit=0", "limit=201", "limit=x", "offset=-1",
                                   "cursor=%%%", "cursor=bm9wZQ", "limit=1&limit=2", "page=2", "source=",
                                   "cursor=WyJvbGRlc3QiLDFd&offset=1"])
def test_bad_queue_queries_are_400(client, query) -> None:
    r = client.get(f"/v1/queue?{query}")
    assert r.status_code == 400, (query, r.get_data(as_text=True))
    assert set(r.get_json()["error"]) == {"code", "message"}


def test_a_cursor_of_one_order_is_refused_for_the_other() -> None:
    with pytest.raises(ValueError):
        decode_cursor("WyJvbGRlc3QiLDFd", "uncertain")  # ["oldest", 1]
    assert decode_cursor("WyJvbGRlc3QiLDFd", "oldest") == [1]


# -- deciding -------------------------------------------------------------------------------------


def test_a_decision_leaves_the_queue_and_reaches_the_feedback_store(client, app) -> None:
    client.post("/v1/classify", json={"text": DISPUTE, "id": "c-9"})
    (item,) = queue_items(client)["items"]
    r = decide(client, item["id"], action="approve")
    assert r.status_code == 200
    assert r.get_json() == {"id": item["id"], "status": "decided", "action": "approve", "label": item["label"],
                            "predicted_label": item["label"], "feedback_id": f"queue:{item['id']}"}
    assert queue_items(client)["pending"] == 0
    (row,) = export_rows(client)
    assert (row["id"], row["text"], row["label"], row["source"]) == (f"queue:{item['id']}", DISPUTE, item["label"],
                                                                     "queue/v1/classify")
    # the store retraining reads (train.py --with-feedback) has it
    decisions = FeedbackStore(app.config["MODCLF"].feedback_db).decisions()
    assert [(d.text, d.label) for d in decisions] == [(DISPUTE, item["label"])]


def test_decisions_are_idempotent_and_a_different_one_needs_override(client) -> None:
    client.post("/v1/classify", json={"text": DISPUTE})
    item_id = queue_items(client)["items"][0]["id"]
    assert decide(client, item_id, action="reject", label="dispute").get_json()["status"] == "decided"
    again = decide(client, item_id, action="reject", label="dispute")
    assert again.status_code == 200 and again.get_json()["status"] == "unchanged"
    conflict = decide(client, item_id, action="approve", label="question")
    assert conflict.status_code == 409 and conflict.get_json()["error"]["code"] == "decision_conflict"
    assert "override" in conflict.get_json()["error"]["message"]
    assert export_rows(client)[0]["label"] == "dispute"  # the refused decision changed nothing
    r = decide(client, item_id, action="approve", label="question", override=True)
    assert r.status_code == 200 and r.get_json()["status"] == "updated" and r.get_json()["label"] == "question"
    (row,) = export_rows(client)
    assert row["label"] == "question"


def test_label_rule() -> None:
    assert feedback_label("reject", "spam", None) == "spam"
    assert feedback_label("approve", "question", None) == "question"
    assert feedback_label("reject", "question", "dispute") == "dispute"
    assert feedback_label("approve", "spam", "support") == "support"
    for action, predicted in (("approve", "spam"), ("reject", "dispute")):
        with pytest.raises(LabelRequired):
            feedback_label(action, predicted, None)


def test_actions_that_imply_no_label_need_one(client) -> None:
    client.post("/v1/classify/batch", json={"comments": [{"text": SPAM}, {"text": DISPUTE}]})
    spam, dispute = queue_items(client)["items"]
    assert spam["label"] == "spam" and dispute["label"] == "dispute"
    for item_id, action in ((spam["id"], "approve"), (dispute["id"], "reject")):
        r = decide(client, item_id, action=action)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "label_required"
    assert queue_items(client)["pending"] == 2  # nothing was decided
    assert decide(client, spam["id"], action="reject").get_json()["label"] == "spam"
    assert decide(client, dispute["id"], action="reject", label="spam").get_json()["label"] == "spam"
    assert {r["label"] for r in export_rows(client)} == {"spam"}


@pytest.mark.parametrize("body,code", [({}, "missing_field"), ({"action": "delete"}, "invalid_action"),
                                       ({"action": "approve", "label": "ham"}, "invalid_label"),
                                       ({"action": "approve", "override": "yes"}, "invalid_type"),
                                       ({"action": "approve", "note": "x"}, "unknown_field")])
def test_bad_decisions_are_400(client, body, code) -> None:
    client.post("/v1/classify", json={"text": DISPUTE})
    item_id = queue_items(client)["items"][0]["id"]
    r = decide(client, item_id, **body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == code


@pytest.mark.parametrize("path", ["/v1/queue/999/decision", "/v1/queue/0/decision", f"/v1/queue/{2**70}/decision"])
def test_unknown_items_are_404(client, path) -> None:
    r = client.post(path, json={"action": "approve"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] in ("queue_item_not_found", "not_found")


def test_the_queue_needs_an_admin_key(model_dir: Path, tmp_path: Path) -> None:
    client = make_app(model_dir, tmp_path, api_keys=KEY, admin_api_keys=ADMIN).test_client()
    client.post("/v1/classify", json={"text": DISPUTE}, headers={"Authorization": f"Bearer {KEY}"})
    assert client.get("/v1/queue").status_code == 401
    assert client.get("/v1/queue", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
    ok = client.get("/v1/queue", headers={"Authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 200 and ok.get_json()["pending"] == 1
    item_id = ok.get_json()["items"][0]["id"]
    assert decide(client, item_id, action="approve").status_code == 401
    doc = client.get("/openapi.json").get_json()
    assert doc["paths"]["/v1/queue"]["get"]["security"] == [{"bearerAuth": []}]


def test_openapi_documents_the_queue(client) -> None:
    doc = client.get("/openapi.json").get_json()
    assert {"/v1/queue", "/v1/queue/{id}/decision"} <= set(doc["paths"])


def test_two_stores_on_one_database_share_the_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = ReviewQueue(FeedbackStore(url)), ReviewQueue(FeedbackStore(url))
    verdict = {"label": "dispute", "confidence": 0.6, "probabilities": dict.fromkeys(LABELS, 0.1) | {"dispute": 0.6},
               "action": "review", "truncated": False, "model_version": "m", "policy_version": "p"}
    assert a.record([{**verdict, "text": "one", "source": "api"}, {**verdict, "text": "two", "source": "api"}]) == 2
    page = b.pending()
    assert [i.text for i in page.items] == ["one", "two"]
    status, item = b.decide(page.items[0].id, "approve")
    assert status == "decided" and a.pending().pending == 1
    assert a.recent_decisions()[0].id == item.id
    assert a.decisions_by_day()[0]["actions"]["approve"] == 1


# -- the queue's feedback rows are the queue's: POST /v1/feedback cannot overwrite or forge them ------------


def test_an_api_key_cannot_overwrite_or_forge_a_moderators_decision(model_dir: Path, tmp_path: Path) -> None:
    """The attack: a moderator decides item 1 (feedback id queue:1), then a plain API key posts
    feedback id queue:1 with another text, label and a queue/ source. Refused for every key."""
    client = make_app(model_dir, tmp_path, api_keys=KEY, admin_api_keys=ADMIN).test_client()
    admin, plain = {"Authorization": f"Bearer {ADMIN}"}, {"Authorization": f"Bearer {KEY}"}
    client.post("/v1/classify", json={"text": SPAM}, headers=plain)
    (item,) = client.get("/v1/queue", headers=admin).get_json()["items"]
    r = client.post(f"/v1/queue/{item['id']}/decision", json={"action": "reject", "label": "spam"}, headers=admin)
    assert r.status_code == 200 and r.get_json()["feedback_id"] == f"queue:{item['id']}"
    forged = {"id": f"queue:{item['id']}", "text": "Thank you, a really helpful report", "label": "support",
              "source": "queue/api"}
    for headers in (plain,):  # (admin keys are not API keys here; test_feedback.py: a server without keys)
        for body in (forged, {**forged, "source": "api"}, {**forged, "id": f"Queue:{item['id']}"},
                     {**forged, "id": f" queue:{item['id']}"}, {**forged, "id": "\u200bqueue:1"}):
            r = client.post("/v1/feedback", json=body, headers=headers)
            assert r.status_code == 403, (body, r.get_data(as_text=True))
            error = r.get_json()["error"]
            assert error["code"] == "reserved_id" and "'queue:'" in error["message"]
        for source in ("queue/api", "QUEUE/console", "queue/coral", "akismet/submit-spam blog"):
            r = client.post("/v1/feedback", json={"id": "mine-1", "text": "x", "label": "spam", "source": source},
                            headers=headers)
            assert r.status_code == 403 and r.get_json()["error"]["code"] == "reserved_source", source
    rows = export_rows_with(client, plain)
    assert [(row["id"], row["text"], row["label"], row["source"]) for row in rows] == [
        (f"queue:{item['id']}", SPAM, "spam", "queue/v1/classify")]  # the moderator's decision stands, nothing added
    # the queue itself still writes its rows (an override goes through the queue, with an admin key)
    r = client.post(f"/v1/queue/{item['id']}/decision", json={"action": "reject", "label": "dispute", "override": True},
                    headers=admin)
    assert r.status_code == 200 and r.get_json()["status"] == "updated"
    assert export_rows_with(client, plain)[0]["label"] == "dispute"


def test_ordinary_ids_keep_one_decision_per_id_whoever_sends_it(model_dir: Path, tmp_path: Path) -> None:
    """Outside the reserved namespaces the documented behaviour stands: one decision per id,
    created / unchanged / updated (the previous one kept in the history), whichever key sends it."""
    other = "o" * 32
    client = make_app(model_dir, tmp_path, api_keys=f"{KEY},{other}", admin_api_keys=ADMIN).test_client()
    first, second = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {other}"}
    body = {"id": "queued-1", "text": "Source?", "label": "question", "source": "myqueue:ann"}
    assert client.post("/v1/feedback", json=body, headers=first).status_code == 201
    again = client.post("/v1/feedback", json=body, headers=second)
    assert again.status_code == 200 and again.get_json()["status"] == "unchanged"
    changed = client.post("/v1/feedback", json={**body, "label": "other"}, headers=second)
    assert changed.status_code == 200 and changed.get_json()["status"] == "updated"


def export_rows_with(client, headers: dict[str, str]) -> list[dict[str, str]]:
    r = client.get("/v1/feedback/export", headers=headers)
    assert r.status_code == 200
    return list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))


# -- long comments: a page carries what the model read, never the whole comment --------------------------


def long_comment(n: int, cue: str = "Write to me on whatsapp +44 7700 900123 for cheap pills") -> str:
    filler = "The council met again on Tuesday and the report was discussed at length by everyone. "
    half = filler * (n // (2 * len(filler)) + 1)
    return (half[:n // 2] + cue + " " + half)[:n]


def test_the_queue_api_returns_the_window_of_a_long_comment(model_dir: Path, tmp_path: Path) -> None:
    from modclf.window import bounded_window

    window = 2000
    client = make_app(model_dir, tmp_path, max_text_chars=window).test_client()
    texts = [long_comment(300_000 + i) for i in range(3)]
    for text in texts:
        assert client.post("/v1/classify", json={"text": text}).get_json()["truncated"] is True
    client.post("/v1/classify", json={"text": DISPUTE})
    r = client.get("/v1/queue", query_string={"limit": 200})
    assert len(r.get_data()) < 4 * window * 2 + 20_000  # not 900,000 characters of comments
    items = r.get_json()["items"]
    assert [i["text"] for i in items[3:]] == [DISPUTE] and items[3]["omitted_chars"] == 0
    for item, text in zip(items, texts):
        assert item["text"] == bounded_window(text, window).text  # exactly what the model read
        assert "whatsapp +44 7700 900123" in item["text"]  # the buried contact is in it
        assert item["omitted_chars"] == len(text) - sum(len(p) for p in item["text"].split("\n...\n"))
        assert item["omitted_chars"] > 290_000


def test_shown_text_locates_every_stretch_of_the_window() -> None:
    from modclf.queue import shown_text

    text = "head\n...\nstill the head " * 30 + long_comment(50_000) + " the very end"
    shown = shown_text(text, 1000)
    assert len(shown.text) <= 1000 and shown.total == len(text)
    assert shown.omitted == len(text) - sum(d - c for _, _, c, d in shown.parts)
    for a, b, c, d in shown.parts:
        assert shown.text[a:b] == text[c:d]
    assert shown.parts[0][2] == 0 and shown.parts[-1][3] == len(text)  # head and tail
    assert any("whatsapp" in shown.text[a:b] for a, b, _, _ in shown.parts[1:-1])
    assert shown_text(text, 1000) is shown  # computed once per process
    short = shown_text(DISPUTE, 1000)
    assert (short.text, short.omitted, short.parts) == (DISPUTE, 0, ((0, len(DISPUTE), 0, len(DISPUTE)),))
