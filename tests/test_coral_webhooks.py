"""Coral webhooks (/integrations/coral/webhooks): events built and signed as Coral's Webhooks guide
documents them, linked to the comments this service held through Coral's external moderation phase,
and the moderators' approve/reject in Coral ending up in the feedback export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

import pytest
from unittest import mock

from modclf.serving import create_app
from modclf.serving.integrations import coral_webhooks

from .integrations_support import coral_body, coral_headers

WEBHOOK_SECRET = "whsec_6f0c1d2e3b4a59687766554433221100"
OLD_WEBHOOK_SECRET = "whsec_00112233445566778899aabbccddeeff"
PHASE_SECRET = "ems_9f3c2a0d5be14c7e8a6b1f2d3c4e5f60"
TENANT = {"tenantID": "19ba5794-7eeb-4d46-a81b-c00c61672501", "tenantDomain": "localhost"}
SITE = "a4bede88-2d2c-4424-bc18-4322a9e285a6"
#: every comment is held for review under this policy
REVIEW_ALL = "labels:\n  spam:\n    - {at_least: 0.0, action: review}\ndefault: review\n"
SPAM = "Earn $500 a day from home!!! Click www.easy-cash-now.com and sign up today, limited offer"
QUESTION = "Does anyone know which town this was filmed in? The article does not say."
DISPUTE = "This is simply false, the author clearly has no idea what he is talking about."


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MODCLF_", "CORAL_", "AKISMET_"))}


def make_app(model_dir: Path, tmp_path: Path, **config: Any):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(REVIEW_ALL)
    with mock.patch.dict(os.environ, clean_env(), clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(policy_file),
                           "feedback_db": f"sqlite:///{tmp_path / 'store.db'}", **config})


@pytest.fixture()
def app(model_dir: Path, tmp_path: Path):
    return make_app(model_dir, tmp_path, coral_signing_secret=PHASE_SECRET,
                    coral_webhook_secret=f"{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}")


@pytest.fixture()
def client(app):
    return app.test_client()


# -- Coral, as documented ---------------------------------------------------------------------------

def created_at(delta: float = 0.0) -> str:
    """``createdAt`` as Coral serialises a JavaScript Date: ``2024-05-01T12:00:00.000Z``."""
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delta)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def event(type_: str, data: dict[str, Any], *, age: float = 0.0, event_id: str | None = None) -> dict[str, Any]:
    """A webhook payload: the event (id, type, data, createdAt) plus tenantID and tenantDomain."""
    return {"id": event_id or str(uuid.uuid4()), "type": type_, "data": data, "createdAt": created_at(-age), **TENANT}


def send(client, payload: dict[str, Any], secrets: Iterable[str] = (WEBHOOK_SECRET,), *, body: bytes | None = None):
    raw = coral_body(payload)
    headers = {**coral_headers(raw, secrets), "X-Coral-Event": payload["type"]}
    return client.post(coral_webhooks.PATH, data=raw if body is None else body, headers=headers)


def story_created(story_id: str, url: str) -> dict[str, Any]:
    return event("STORY_CREATED", {"storyID": story_id, "storyURL": url, "siteID": SITE})


def queue_event(type_: str, comment_id: str, story_id: str, status: str, queue: str = "PENDING") -> dict[str, Any]:
    return event(type_, {"queue": queue, "commentID": comment_id, "status": status, "storyID": story_id,
                         "siteID": SITE})


def hold(client, text: str, story_id: str, url: str) -> None:
    """Coral's external moderation phase sees the comment (no id yet) and this service holds it."""
    request = {"action": "NEW", "comment": {"body": text, "parentID": None},
               "author": {"id": str(uuid.uuid4()), "role": "COMMENTER"},
               "story": {"id": story_id, "url": url}, "site": {"id": SITE}, **TENANT}
    raw = coral_body(request)
    r = client.post("/integrations/coral", data=raw, headers=coral_headers(raw, [PHASE_SECRET]))
    assert r.status_code == 200 and r.get_json()["status"] == "SYSTEM_WITHHELD", r.get_data(as_text=True)


def export_rows(client) -> list[dict[str, str]]:
    r = client.get("/v1/feedback/export")
    assert r.status_code == 200
    return list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))


def pending(client) -> list[dict[str, Any]]:
    return client.get("/v1/queue").get_json()["items"]


def held_in_coral(client, text: str, *, story: str | None = None) -> tuple[str, str]:
    """Story created, comment held by the phase, Coral reports it in its pending queue: linked."""
    story_id = story or str(uuid.uuid4())
    url = f"https://news.example/{story_id}/"
    assert send(client, story_created(story_id, url)).get_json()["status"] == "applied"
    hold(client, text, story_id, url)
    comment_id = str(uuid.uuid4())
    r = send(client, queue_event("COMMENT_ENTERED_MODERATION_QUEUE", comment_id, story_id, "SYSTEM_WITHHELD"))
    assert r.status_code == 200 and r.get_json()["status"] == "applied", r.get_json()
    return comment_id, story_id


# -- signing ----------------------------------------------------------------------------------------

def test_not_installed_without_its_secret(model_dir: Path, tmp_path: Path) -> None:
    app = make_app(model_dir, tmp_path, coral_signing_secret=PHASE_SECRET)
    assert send(app.test_client(), story_created("s", "https://news.example/s")).status_code == 404


def test_signed_event_is_accepted(client) -> None:
    r = send(client, story_created("s1", "https://news.example/s1"))
    assert r.status_code == 200 and r.get_json()["status"] == "applied"


def test_missing_wrong_or_foreign_signature_is_401(client) -> None:
    payload = story_created("s1", "https://news.example/s1")
    raw = coral_body(payload)
    assert client.post(coral_webhooks.PATH, data=raw, headers={"Content-Type": "application/json"}).status_code == 401
    assert send(client, payload, ["not-the-secret"]).status_code == 401
    # the external moderation phase's secret is not the webhook endpoint's
    r = send(client, payload, [PHASE_SECRET])
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_signature"


def test_tampered_body_is_401(client) -> None:
    payload = story_created("s1", "https://news.example/s1")
    tampered = coral_body({**payload, "data": {**payload["data"], "storyURL": "https://evil.example/"}})
    assert send(client, payload, body=tampered).status_code == 401


def test_rolled_secret_two_signatures(client, app) -> None:
    # while a secret is rolled Coral signs with both: new and old, in one header
    assert send(client, story_created("s1", "https://news.example/s1"), [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET]).status_code == 200
    # a receiver that knows either one accepts it
    assert send(client, story_created("s2", "https://news.example/s2"), ["retired-secret", OLD_WEBHOOK_SECRET]).status_code == 200
    assert send(client, story_created("s3", "https://news.example/s3"), ["retired-secret", "other"]).status_code == 401


def test_stale_or_future_event_is_not_applied(client) -> None:
    story_id, url = "stale-story", "https://news.example/stale/"
    stale = event("STORY_CREATED", {"storyID": story_id, "storyURL": url, "siteID": SITE}, age=6 * 60)
    r = send(client, stale)
    assert r.status_code == 200 and r.get_json() == {"event": stale["id"], "type": "STORY_CREATED",
                                                     "status": "ignored", "reason": "stale"}
    future = event("STORY_CREATED", {"storyID": story_id, "storyURL": url, "siteID": SITE}, age=-6 * 60)
    assert send(client, future).get_json()["reason"] == "stale"
    # the story was not remembered: a comment held on it cannot be linked
    hold(client, QUESTION, story_id, url)
    r = send(client, queue_event("COMMENT_ENTERED_MODERATION_QUEUE", "c-stale", story_id, "SYSTEM_WITHHELD"))
    assert r.get_json()["status"] == "ignored" and r.get_json()["reason"] == "unknown_story"


def test_event_fields_are_escaped_in_the_log(client, caplog: pytest.LogCaptureFixture) -> None:
    """Ids come from the signed body: control characters in them must not forge log lines."""
    forged = "e\u001b[31m\r\nFAKE line"
    stale = event("STORY_CREATED\u001b[2J", {"storyID": "s", "storyURL": "https://news.example/s/"}, age=600,
                  event_id=forged)
    with caplog.at_level("INFO"):
        send(client, stale)
        send(client, queue_event("COMMENT_ENTERED_MODERATION_QUEUE", "c\r\nFAKE", "s\u001b", "SYSTEM_WITHHELD"))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "FAKE" in logged and not any(c in logged for c in "\r\u001b") and "\nFAKE" not in logged


def test_unknown_event_types_are_acknowledged_and_ignored(client) -> None:
    for type_ in ("COMMENT_CREATED", "COMMENT_REPLY_CREATED", "SOMETHING_NEW"):
        r = send(client, event(type_, {"commentID": "c1", "storyID": "s1", "siteID": SITE}))
        assert r.status_code == 200 and r.get_json()["status"] == "ignored"


def test_malformed_signed_body_is_400(client) -> None:
    raw = b"{not json"
    headers = coral_headers(raw, [WEBHOOK_SECRET])
    assert client.post(coral_webhooks.PATH, data=raw, headers=headers).status_code == 400


# -- decisions ----------------------------------------------------------------------------------------

def test_approve_in_coral_becomes_feedback(client) -> None:
    comment_id, story_id = held_in_coral(client, QUESTION)
    (item,) = pending(client)
    left = queue_event("COMMENT_LEFT_MODERATION_QUEUE", comment_id, story_id, "APPROVED")
    r = send(client, left)
    assert r.status_code == 200 and r.get_json()["status"] == "applied", r.get_json()
    assert pending(client) == []
    (row,) = export_rows(client)
    assert row["id"] == f"queue:{item['id']}" and row["text"] == QUESTION
    assert row["label"] == item["label"] != "spam" and row["source"] == "queue/coral"
    # the same delivery again, and another event for the same comment (it also leaves UNMODERATED)
    assert send(client, left).get_json()["status"] == "duplicate"
    again = queue_event("COMMENT_LEFT_MODERATION_QUEUE", comment_id, story_id, "APPROVED")
    assert send(client, again).get_json()["status"] == "applied"
    other_queue = queue_event("COMMENT_LEFT_MODERATION_QUEUE", comment_id, story_id, "APPROVED", queue="UNMODERATED")
    assert send(client, other_queue).get_json()["status"] == "ignored"
    assert len(export_rows(client)) == 1


def test_reject_in_coral_of_spam_and_dispute(client) -> None:
    spam_comment, spam_story = held_in_coral(client, SPAM)
    dispute_comment, dispute_story = held_in_coral(client, DISPUTE)
    labels = {i["text"]: i["label"] for i in pending(client)}
    assert labels == {SPAM: "spam", DISPUTE: "dispute"}
    for comment_id, story_id in ((spam_comment, spam_story), (dispute_comment, dispute_story)):
        r = send(client, queue_event("COMMENT_LEFT_MODERATION_QUEUE", comment_id, story_id, "REJECTED"))
        assert r.get_json()["status"] == "applied", r.get_json()
    rows = {row["text"]: row for row in export_rows(client)}
    assert rows[SPAM]["label"] == "spam" and rows[DISPUTE]["label"] == "dispute"
    assert {row["source"] for row in rows.values()} == {"queue/coral"}


def test_approve_of_predicted_spam_implies_no_label(client) -> None:
    comment_id, story_id = held_in_coral(client, SPAM)
    r = send(client, queue_event("COMMENT_LEFT_MODERATION_QUEUE", comment_id, story_id, "APPROVED"))
    assert r.get_json()["status"] == "ignored" and r.get_json()["reason"] == "label_not_implied"
    assert export_rows(client) == [] and len(pending(client)) == 1  # left for a moderator to label


def test_console_decision_is_kept(client) -> None:
    comment_id, story_id = held_in_coral(client, DISPUTE)
    (item,) = pending(client)
    r = client.post(f"/v1/queue/{item['id']}/decision", json={"action": "reject", "label": "spam"})
    assert r.status_code == 200
    r = send(client, queue_event("COMMENT_LEFT_MODERATION_QUEUE", comment_id, story_id, "REJECTED"))
    assert r.get_json()["reason"] == "conflict"
    (row,) = export_rows(client)
    assert row["label"] == "spam"


def test_unlinked_and_non_decision_events_change_nothing(client) -> None:
    # a comment that Coral pre-moderated (PREMOD), not held by this service
    story_id, url = "s-premod", "https://news.example/premod/"
    send(client, story_created(story_id, url))
    r = send(client, queue_event("COMMENT_ENTERED_MODERATION_QUEUE", "c-premod", story_id, "PREMOD"))
    assert r.get_json()["status"] == "ignored"
    assert send(client, queue_event("COMMENT_LEFT_MODERATION_QUEUE", "c-premod", story_id, "APPROVED")).get_json()["reason"] == "not_linked"
    # a held comment leaving the queue with a status that is not a moderator's approve or reject
    comment_id, story_id = held_in_coral(client, QUESTION)
    r = send(client, queue_event("COMMENT_LEFT_MODERATION_QUEUE", comment_id, story_id, "NONE"))
    assert r.get_json()["status"] == "ignored"
    assert export_rows(client) == []


def test_two_held_comments_on_one_story_are_not_guessed(client) -> None:
    story_id, url = str(uuid.uuid4()), "https://news.example/busy/"
    send(client, story_created(story_id, url))
    hold(client, QUESTION, story_id, url)
    hold(client, DISPUTE, story_id, url)
    r = send(client, queue_event("COMMENT_ENTERED_MODERATION_QUEUE", "c-a", story_id, "SYSTEM_WITHHELD"))
    assert r.get_json()["status"] == "ignored" and r.get_json()["reason"] == "ambiguous"
    send(client, queue_event("COMMENT_LEFT_MODERATION_QUEUE", "c-a", story_id, "APPROVED"))
    assert export_rows(client) == [] and len(pending(client)) == 2


def test_only_recent_held_comments_are_linked(client, monkeypatch) -> None:
    story_id, url = str(uuid.uuid4()), "https://news.example/old/"
    send(client, story_created(story_id, url))
    hold(client, QUESTION, story_id, url)
    monkeypatch.setattr(coral_webhooks, "LINK_WINDOW", -1)  # the held comment is now "too old"
    r = send(client, queue_event("COMMENT_ENTERED_MODERATION_QUEUE", "c-old", story_id, "SYSTEM_WITHHELD"))
    assert r.get_json()["reason"] == "no_candidate"


def test_secret_from_the_documented_environment_name() -> None:
    from modclf.settings import load_settings

    cfg = load_settings(environ={"CORAL_WEBHOOK_SECRET": f"{WEBHOOK_SECRET}, {OLD_WEBHOOK_SECRET}"})
    assert cfg.coral_webhook_secret == (WEBHOOK_SECRET, OLD_WEBHOOK_SECRET)
    assert WEBHOOK_SECRET not in repr(cfg)


def test_in_the_openapi_document_only_when_installed(client, model_dir: Path, tmp_path: Path) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["paths"][coral_webhooks.PATH]["post"]["operationId"] == "coralWebhook"
    other = make_app(model_dir, tmp_path)  # the same store, no webhook secret
    assert coral_webhooks.PATH not in other.test_client().get("/openapi.json").get_json()["paths"]
