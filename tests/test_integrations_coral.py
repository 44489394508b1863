"""Coral's external moderation phase: requests signed and shaped exactly as Coral sends them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modclf.serving.integrations import plain_text
from modclf.serving.integrations.coral import coral_response, parse_signatures, verify_signature
from modclf.policy import DEFAULT_POLICY_PATH, load_policy
from modclf.serving import create_app

from .integrations_support import (DISPUTE, LINK_DROP, ORDINARY, assert_valid_coral_response, coral_body,
                                   coral_headers, coral_request, server_env)

SECRET = "ems_9f3c2a0d5be14c7e8a6b1f2d3c4e5f60"
OLD_SECRET = "ems_0123456789abcdef0123456789abcdef"


def make_app(model_dir: Path, db: Path, **config: Any):
    with mock.patch.dict(os.environ, server_env(), clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH),
                           "feedback_db": f"sqlite:///{db}", **config})


@pytest.fixture(scope="module")
def app(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("coral") / "feedback.db"
    return make_app(model_dir, db, coral_signing_secret=f"{SECRET},{OLD_SECRET}", max_text_chars=2000)


@pytest.fixture()
def client(app):
    return app.test_client()


def post(client, data: Any, secrets=(SECRET,)):
    body = coral_body(data)
    return client.post("/integrations/coral", data=body, headers=coral_headers(body, secrets))


def predictions(client) -> float:
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == "modclf_predictions_total":
                total += sample.value
    return total


def test_link_drop_is_rejected_and_flagged_as_spam(client) -> None:
    r = post(client, coral_request(LINK_DROP))
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert_valid_coral_response(body)
    assert body == {"status": "REJECTED", "actions": [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_SPAM"}]}


def test_ordinary_comment_needs_no_action(client) -> None:
    r = post(client, coral_request(ORDINARY))
    assert r.status_code == 204 and r.get_data() == b""


def test_dispute_is_withheld_for_a_moderator_with_the_toxic_flag(client) -> None:
    r = post(client, coral_request(DISPUTE, action="EDIT", parent="d79b787f-f406-49a0-a179-72e3652e54be"))
    assert r.status_code == 200
    body = r.get_json()
    assert_valid_coral_response(body)
    assert body == {"status": "SYSTEM_WITHHELD", "actions": [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_TOXIC"}]}


def test_rotation_accepts_either_secret_and_a_header_with_several_signatures(client) -> None:
    # Coral signs with every active secret while rolling: our old one plus a new one we lack yet.
    r = post(client, coral_request(LINK_DROP), secrets=("ems_brand_new_secret_not_configured_here", OLD_SECRET))
    assert r.status_code == 200 and r.get_json()["status"] == "REJECTED"
    # ...and after the roll only the new one, which is also configured here
    assert post(client, coral_request(ORDINARY), secrets=(SECRET,)).status_code == 204


def test_secret_from_the_environment(model_dir: Path, tmp_path: Path) -> None:
    env = server_env(CORAL_SIGNING_SECRET=f" {OLD_SECRET} , ")
    with mock.patch.dict(os.environ, env, clear=True):
        app = create_app({"model_dir": str(model_dir), "feedback_db": f"sqlite:///{tmp_path / 'f.db'}"})
    client = app.test_client()
    assert post(client, coral_request(ORDINARY), secrets=(OLD_SECRET,)).status_code == 204
    assert post(client, coral_request(ORDINARY), secrets=(SECRET,)).status_code == 401


@pytest.mark.parametrize("how", ["tampered body", "wrong secret", "no header", "empty header", "not sha256",
                                 "truncated signature"])
def test_unsigned_or_tampered_requests_are_refused_and_leave_no_trace(app, client, how: str) -> None:
    store = app.extensions["modclf_feedback"]
    rows_before, predicted_before = store.count(), predictions(client)
    body = coral_body(coral_request(LINK_DROP))
    headers = coral_headers(body, (SECRET,))
    if how == "tampered body":
        body = body.replace(b"easy-cash-now", b"easy-cash-new")
    elif how == "wrong secret":
        headers = coral_headers(body, ("ems_someone_elses_secret",))
    elif how == "no header":
        del headers["X-Coral-Signature"]
    elif how == "empty header":
        headers["X-Coral-Signature"] = ""
    elif how == "not sha256":
        headers["X-Coral-Signature"] = headers["X-Coral-Signature"].replace("sha256=", "sha1=")
    else:
        headers["X-Coral-Signature"] = headers["X-Coral-Signature"][:-1]
    r = client.post("/integrations/coral", data=body, headers=headers)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "invalid_signature"
    assert store.count() == rows_before  # nothing stored...
    assert predictions(client) == predicted_before  # ...and nothing even classified


def test_valid_requests_do_not_write_to_the_feedback_store(app, client) -> None:
    """A Coral request carries the model's opinion, not a moderator's decision."""
    store = app.extensions["modclf_feedback"]
    before = store.count()
    assert post(client, coral_request(LINK_DROP)).status_code == 200
    assert store.count() == before


def test_html_body_is_read_as_text_with_its_link_targets(client) -> None:
    html = ('<p>Nice report! Make $5000 a week from home!!! Click <a href="http://www.easy-cash-now.com">here</a> '
            'and sign up today, limited offer, visit <a href="http://www.easy-cash-now.com/join">my page</a></p>')
    r = post(client, coral_request(html))
    assert r.status_code == 200 and {"actionType": "FLAG", "reason": "COMMENT_DETECTED_SPAM"} in r.get_json()["actions"]


SPAM_LINE = "FREE followers >>> www dot fans4u dot net"


@pytest.mark.parametrize("body", [
    f"Thanks, great report. I use <b> for bold. <!-- {SPAM_LINE} -->",  # hidden in an HTML comment
    "<b> <!-- For cheap loans WhatsApp me +1 555 0100 -->",  # nothing else: not "nothing to judge"
    f"Thanks, great report <b> <span title='{SPAM_LINE}'>yes</span>",  # in a tooltip
    f"{SPAM_LINE} <b><![foo[bar]]>",  # a declaration html.parser raised on (a 500)
    f"{SPAM_LINE} <i><![ ",
])
def test_markup_hides_nothing_and_never_fails(client, body: str) -> None:
    """Coral's PLAIN_TEXT body shows "<!-- ... -->" to readers as typed; the model reads it too."""
    r = post(client, coral_request(body))
    assert r.status_code == 200, (r.status_code, r.get_data()[:200])
    assert r.get_json()["status"] in ("REJECTED", "SYSTEM_WITHHELD")


@pytest.mark.parametrize("body, text", [
    ('Nice <b>bold</b> and <a href="http://x.example/y">click</a>', "Nice bold and click\nhttp://x.example/y"),
    ("<p>One</p><p>Two &amp; three</p>", "One\n\nTwo & three"),
    ("a < b and <b>c</b>", "a < b and c"),
    ('<b>x</b> <img alt="buy pills" src="http://p.example/a.png">', "x\nhttp://p.example/a.png\nbuy pills"),
    ("plain <3 text, no markup", "plain <3 text, no markup"),
    ('<b>unclosed <a href="x.example" and more', 'unclosed <a href="x.example" and more'),  # no ">": text
    # tags WordPress allows visitors, with no other markup: their tooltips are read (a third attack)
    ('Thanks. <acronym title="Cheap loans, WhatsApp +1 555 010 9999">FYI</acronym>',
     "Thanks. FYI\nCheap loans, WhatsApp +1 555 010 9999"),
    ('<abbr title="loans at syriamp3.com">Thanks for the report</abbr>', "Thanks for the report\nloans at syriamp3.com"),
    ('nice <img alt="cheap pills" src="x.png"> ok', "nice  ok\nx.png\ncheap pills"),
])
def test_plain_text(body: str, text: str) -> None:
    assert plain_text(body) == text


@pytest.mark.parametrize("body", ["Nice one <b>" + "<a " * 10_000, "<b>" + "<!--" * 25_000,
                                  "<b>" + "".join(f'<a href="h{i}">{"w" * 70}</a>' for i in range(1_000)),
                                  "<b>" + "<a>" * 30_000])
def test_plain_text_does_not_hang_on_pathological_markup(body: str) -> None:
    """Not a speed test: html.parser took 12 s on the first body (quadratic), long enough for Coral
    to give up and publish; one linear pass takes milliseconds, so 5 s only catches a hang."""
    start = time.perf_counter()
    plain_text(body)
    assert time.perf_counter() - start < 5
    assert plain_text("<b>" + "<a>" * 40_000) == "<b>" + "<a>" * 40_000  # past MAX_MARKUP_CHARS: as it is


@pytest.mark.parametrize("data,code,status", [
    ({"action": "NEW"}, "missing_field", 400),
    ({"action": "NEW", "comment": "text"}, "missing_field", 400),
    ({"action": "NEW", "comment": {"body": 5}}, "invalid_type", 400),
    ({"action": "DELETE", "comment": {"body": "hi"}}, "invalid_action", 400),
    (["not", "an", "object"], "invalid_body", 400),
])
def test_signed_but_malformed_requests_are_4xx(client, data: Any, code: str, status: int) -> None:
    r = post(client, data)
    assert r.status_code == status and r.get_json()["error"]["code"] == code


def test_signed_non_json_is_rejected(client) -> None:
    for body, ctype, code in ((b"{nope", "application/json", "invalid_json"), (b"\xff\xfe", "application/json", "invalid_utf8"),
                              (b"{}", "text/plain", "unsupported_media_type")):
        headers = {**coral_headers(body, (SECRET,)), "Content-Type": ctype}
        r = client.post("/integrations/coral", data=body, headers=headers)
        assert r.status_code in (400, 415) and r.get_json()["error"]["code"] == code


def test_empty_comment_and_unknown_fields(client) -> None:
    assert post(client, coral_request("   ")).status_code == 204
    # Coral versions differ (tenant object instead of tenantID/tenantDomain): extra fields are fine
    data = {**coral_request(LINK_DROP), "tenant": {"id": "t", "domain": "localhost"}, "future": [1, 2]}
    assert post(client, data).status_code == 200


def test_not_installed_without_a_secret(model_dir: Path, tmp_path: Path) -> None:
    client = make_app(model_dir, tmp_path / "f.db").test_client()
    r = post(client, coral_request(LINK_DROP))
    assert r.status_code == 404
    assert "/integrations/coral" not in client.get("/openapi.json").get_json()["paths"]


def test_openapi_documents_the_phase(client) -> None:
    doc = client.get("/openapi.json").get_json()
    op = doc["paths"]["/integrations/coral"]["post"]
    assert {"200", "204", "400", "401"} <= set(op["responses"])
    assert doc["components"]["schemas"]["CoralModerationResponse"]["properties"]["status"]["enum"] == ["REJECTED", "SYSTEM_WITHHELD"]


# -- signature and mapping, directly ------------------------------------------------------------------

def test_signature_parsing_follows_corals_steps() -> None:
    assert parse_signatures("sha256=aa,sha256=bb") == ["aa", "bb"]
    assert parse_signatures("t=123, sha256=aa ,v1=zz,sha256=") == ["aa"]
    body = b'{\n  "a": 1\n}'
    header = coral_headers(body, ("s1", "s2"))["X-Coral-Signature"]
    assert verify_signature(body, header, ["s2"]) and verify_signature(body, header, ["x", "s1"])
    assert not verify_signature(body, header, ["x"]) and not verify_signature(body, header, [])
    assert not verify_signature(body, "sha256=\u00e9\u00e9", ["s1"])  # non-ASCII in a header: refused, not a crash


def _result(label: str, action: str, **p: float) -> dict[str, Any]:
    probabilities = {"spam": 0.0, "dispute": 0.0, "question": 0.0, "support": 0.0, "other": 0.0, **p}
    return {"label": label, "confidence": probabilities[label], "probabilities": probabilities, "action": action}


def test_documented_mapping() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert coral_response(_result("support", "approve", support=0.9), policy) is None
    assert coral_response(_result("spam", "reject", spam=0.95), policy) == {
        "status": "REJECTED", "actions": [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_SPAM"}]}
    assert coral_response(_result("spam", "review", spam=0.6, other=0.4), policy) == {
        "status": "SYSTEM_WITHHELD", "actions": [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_SPAM"}]}
    # not the top label, but p(spam) reached the policy's spam escalation
    assert coral_response(_result("other", "review", other=0.55, spam=0.4), policy)["actions"] == [
        {"actionType": "FLAG", "reason": "COMMENT_DETECTED_SPAM"}]
    assert coral_response(_result("dispute", "review", dispute=0.9), policy) == {
        "status": "SYSTEM_WITHHELD", "actions": [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_TOXIC"}]}
    # unsure model: held, with no flag (Coral has no reason for "unsure")
    assert coral_response(_result("question", "review", question=0.35, other=0.3), policy) == {"status": "SYSTEM_WITHHELD"}
    for response in filter(None, [coral_response(_result("dispute", "reject", dispute=0.5, spam=0.45), policy)]):
        assert_valid_coral_response(response)
        assert response["status"] == "REJECTED" and len(response["actions"]) == 2
