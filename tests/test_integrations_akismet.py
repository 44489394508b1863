"""The Akismet-compatible API, driven by the published `akismet` client (PyPI) against real gunicorn.

The `akismet` package has no base-URL setting; it takes a custom ``httpx.Client`` (its documented
hook for proxies and other HTTP customizations). The client below sends what would go to
``https://rest.akismet.com/<path>`` to ``http://127.0.0.1:<port>/akismet/<path>`` instead: the
requests themselves (form fields, headers, endpoints) are the library's own.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterator
from unittest import mock
from urllib.parse import quote_plus

import akismet
import httpx
import pytest
import requests

from modclf.policy import DEFAULT_POLICY_PATH
from modclf.serving import create_app

from .integrations_support import LINK_DROP, ORDINARY, Server, server_env, start_server

KEY = "a1b2c3d4e5f6"
OTHER_KEY = "0f9e8d7c6b5a"
BLOG = "https://news.example.org/"
SUBMISSION = "Thanks for making the web a better place."
pytestmark = pytest.mark.slow


class AkismetAt(httpx.BaseTransport):
    """An httpx transport that sends the Akismet client's requests to another Akismet endpoint."""

    def __init__(self, base_url: str):
        self._base = httpx.URL(base_url)
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = self._base.join(request.url.path.lstrip("/")).copy_with(query=request.url.query or None)
        request.headers["Host"] = self._base.netloc.decode("ascii")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def client_for(base_url: str, key: str = KEY) -> akismet.SyncClient:
    http = httpx.Client(transport=AkismetAt(base_url), headers={"User-Agent": akismet.USER_AGENT}, timeout=30)
    return akismet.SyncClient(config=akismet.Config(key=key, url=BLOG), http_client=http)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("akismet")
    srv = start_server("gunicorn", work / "gunicorn.log", {
        "MODCLF_MODEL_DIR": str(model_dir), "MODCLF_POLICY": str(DEFAULT_POLICY_PATH),
        "MODCLF_FEEDBACK_DB": f"sqlite:///{work / 'feedback.db'}", "AKISMET_API_KEYS": f"{KEY},{OTHER_KEY}"})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[akismet.SyncClient]:
    with akismet.SyncClient.validated_client(config=akismet.Config(key=KEY, url=BLOG),
                                             http_client=httpx.Client(transport=AkismetAt(f"{server.url}/akismet/"),
                                                                      headers={"User-Agent": akismet.USER_AGENT},
                                                                      timeout=30)) as c:
        yield c


def exported(server: Server) -> list[dict[str, str]]:
    r = requests.get(f"{server.url}/v1/feedback/export", timeout=30)
    assert r.status_code == 200
    return list(csv.DictReader(io.StringIO(r.text)))


def test_real_client_link_drop_is_spam_and_ordinary_comment_is_not(client: akismet.SyncClient) -> None:
    spam = client.comment_check(user_ip="203.0.113.7", comment_content=LINK_DROP, comment_type="comment",
                                comment_author="Cash Guru", user_agent="Mozilla/5.0", permalink=f"{BLOG}story/1")
    assert spam  # Akismet "true"
    assert spam == akismet.CheckResponse.DISCARD  # confident spam: X-akismet-pro-tip: discard
    ham = client.comment_check(user_ip="198.51.100.4", comment_content=ORDINARY, comment_type="comment",
                               comment_author="Maria", user_agent="Mozilla/5.0")
    assert ham == akismet.CheckResponse.HAM  # Akismet "false"


def test_documented_test_values(client: akismet.SyncClient) -> None:
    assert client.comment_check(user_ip="203.0.113.7", comment_content=ORDINARY,
                                comment_author="akismet-guaranteed-spam") == akismet.CheckResponse.SPAM
    assert client.comment_check(user_ip="203.0.113.7", comment_content=LINK_DROP, user_role="administrator",
                                is_test=True) == akismet.CheckResponse.HAM


def test_key_verification_and_rotation(server: Server) -> None:
    base = f"{server.url}/akismet/"
    assert client_for(base).verify_key() is True
    assert client_for(base, OTHER_KEY).verify_key() is True
    assert client_for(base, "not-a-key").verify_key() is False
    with pytest.raises(akismet.APIKeyError):
        akismet.SyncClient.validated_client(config=akismet.Config(key="not-a-key", url=BLOG),
                                            http_client=httpx.Client(transport=AkismetAt(base)))
    with pytest.raises(akismet.APIKeyError):  # every other call answers "invalid" to a bad key
        client_for(base, "not-a-key").comment_check(user_ip="203.0.113.7", comment_content=ORDINARY)


def test_submissions_are_stored_as_feedback(server: Server, client: akismet.SyncClient) -> None:
    missed = "Cheap essays written for you, message me on telegram @essaypro99"
    false_positive = "My cousin runs the bakery on Main Street and it closed last week, sad news."
    assert client.submit_spam(user_ip="203.0.113.9", comment_content=missed, comment_author="E") is True
    assert client.submit_ham(user_ip="198.51.100.5", comment_content=false_positive, comment_author="J") is True
    # the same submission again is one decision, not two
    assert client.submit_spam(user_ip="203.0.113.9", comment_content=missed, comment_author="E") is True
    # is_test calls have no training effect (Akismet's definition): answered, not stored
    assert client.submit_spam(user_ip="203.0.113.9", comment_content="test only spam", is_test=True) is True
    rows = {r["text"]: r for r in exported(server)}
    assert rows[missed]["label"] == "spam" and rows[false_positive]["label"] == "ham"
    assert rows[missed]["source"] == f"akismet/submit-spam {BLOG}"
    assert "test only spam" not in rows
    assert sum(1 for r in rows.values() if r["text"] == missed) == 1


def test_wire_format_as_akismet_defines_it(server: Server) -> None:
    url = f"{server.url}/akismet/1.1"
    r = requests.post(f"{url}/comment-check", data={"api_key": KEY, "blog": BLOG, "user_ip": "1.2.3.4",
                                                     "comment_content": LINK_DROP}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert r.text == "true" and r.headers["X-akismet-pro-tip"] == "discard"
    r = requests.post(f"{url}/comment-check", data={"api_key": KEY, "blog": BLOG, "comment_content": "x"}, timeout=30)
    assert r.text == "Missing required field: user_ip." and r.headers["X-akismet-debug-help"]
    r = requests.post(f"{url}/verify-key", data={"key": KEY, "blog": "news.example.org"}, timeout=30)
    assert r.text == "invalid" and "blog" in r.headers["X-akismet-debug-help"]
    r = requests.post(f"{url}/submit-spam", data={"api_key": KEY, "blog": BLOG, "user_ip": "1.2.3.4"}, timeout=30)
    assert r.text == "Missing required field: comment_content."
    assert requests.get(f"{url}/comment-check", timeout=30).status_code == 405


# -- in-process details -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("akismet-app") / "feedback.db"
    with mock.patch.dict(os.environ, server_env(), clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH), "max_text_chars": 500,
                           "feedback_db": f"sqlite:///{db}", "akismet_api_keys": [KEY]})


def form(**fields: str) -> dict[str, str]:
    return {"api_key": KEY, "blog": BLOG, "user_ip": "192.0.2.1", **fields}


def test_blog_charset_is_honoured(app) -> None:
    client = app.test_client()
    text = "Très intéressant, merci pour cet article très complet à propos du conseil municipal."
    raw = "&".join(f"{k}={quote_plus(v, encoding='latin-1')}" for k, v in
                   {**form(blog_charset="ISO-8859-1"), "comment_content": text}.items())
    r = client.post("/akismet/1.1/submit-ham", data=raw, content_type="application/x-www-form-urlencoded")
    assert r.get_data(as_text=True) == SUBMISSION
    stored = app.extensions["modclf_feedback"].decisions()
    assert [d.text for d in stored if d.label == "ham"] == [text]


@pytest.mark.parametrize("fields,expected,debug", [
    (form(api_key=""), "invalid", 'Empty "api_key" value'),
    (form(api_key="wrong"), "invalid", "Invalid API key"),
    (form(blog=""), "invalid", 'Empty "blog" value'),
    (form(blog="ftp://x"), "invalid", "unable to parse"),
    (form(user_ip=""), "Missing required field: user_ip.", "Missing required field: user_ip."),
    (form(comment_content=""), "false", None),
    (form(comment_author_email="akismet-guaranteed-spam@example.com", comment_content=ORDINARY), "true", None),
])
def test_comment_check_answers(app, fields: dict[str, str], expected: str, debug: str | None) -> None:
    r = app.test_client().post("/akismet/1.1/comment-check", data=fields)
    assert r.status_code == 200 and r.get_data(as_text=True) == expected
    if debug is None:
        assert "X-akismet-debug-help" not in r.headers
    else:
        assert debug in r.headers["X-akismet-debug-help"]


def test_bad_requests_are_4xx(app) -> None:
    client = app.test_client()
    r = client.post("/akismet/1.1/comment-check", json=form(comment_content="hi"))
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type"
    r = client.post("/akismet/1.1/comment-check", data=form(comment_content="x" * 501))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "text_too_long"
    r = client.post("/akismet/1.1/comment-check", data=b"api_key=%zz&blog=%ff%fe&user_ip=%",
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200 and r.get_data(as_text=True) == "invalid"
    assert client.post("/akismet/1.1/nope", data=form()).status_code == 404


def test_not_installed_without_keys(model_dir: Path, tmp_path: Path) -> None:
    with mock.patch.dict(os.environ, server_env(), clear=True):
        app = create_app({"model_dir": str(model_dir), "feedback_db": f"sqlite:///{tmp_path / 'f.db'}"})
    assert app.test_client().post("/akismet/1.1/verify-key", data={"key": KEY, "blog": BLOG}).status_code == 404
