"""The Akismet-compatible API, driven by the published `akismet` client (PyPI) against real gunicorn.

The `akismet` package has no base-URL setting; it takes a custom ``httpx.Client`` (its documented
hook for proxies and other HTTP customizations). The client below sends what would go to
``https://rest.akismet.com/<path>`` to ``http://127.0.0.1:<port>/akismet/<path>`` instead: the
requests themselves (form fields, headers, endpoints) are the library's own.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import quopri
from pathlib import Path
from typing import Iterator
from unittest import mock
from urllib.parse import quote_from_bytes, quote_plus

import akismet
import httpx
import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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
    r = client.post("/akismet/1.1/comment-check", data=b"api_key=%zz&blog=%ff%fe&user_ip=%",
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200 and r.get_data(as_text=True) == "invalid"
    assert client.post("/akismet/1.1/nope", data=form()).status_code == 404


def test_not_installed_without_keys(model_dir: Path, tmp_path: Path) -> None:
    with mock.patch.dict(os.environ, server_env(), clear=True):
        app = create_app({"model_dir": str(model_dir), "feedback_db": f"sqlite:///{tmp_path / 'f.db'}"})
    assert app.test_client().post("/akismet/1.1/verify-key", data={"key": KEY, "blog": BLOG}).status_code == 404


# -- Akismet's API reference, parameter by parameter; no 5xx from any input ----------------------------

V11 = "/akismet/1.1"
FORM = "application/x-www-form-urlencoded"
CHECK_ANSWERS = {"true", "false", "invalid", "Missing required field: user_ip."}
SUBMIT_ANSWERS = {SUBMISSION, "invalid", "Missing required field: user_ip.", "Missing required field: comment_content."}
ANSWERS = {"verify-key": {"valid", "invalid"}, "comment-check": CHECK_ANSWERS,
           "submit-spam": SUBMIT_ANSWERS, "submit-ham": SUBMIT_ANSWERS}
#: the documented non-200 answers (JSON errors) and their codes
ERROR_CODES = {400: {"invalid_body", "malformed_body"}, 413: {"payload_too_large"}, 415: {"unsupported_media_type"}}
#: blog_charset values that are not text encodings a form can be written in
NOT_TEXT_CHARSETS = ["rot13", "rot_13", "base64", "base_64", "zlib", "hex", "bz2", "uu", "quopri", "idna", "punycode",
                     "unicode_escape", "raw_unicode_escape", "undefined", "mbcs", "no-such-charset", "utf\x00-8", "\x00",
                     "x" * 3000, "utf-8\xff", "../../etc/passwd", "utf-8; DROP", " ", "%"]


@pytest.fixture(scope="module")
def fuzz_app(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small request cap (4 KiB) and model window (300 characters), so both limits are reached."""
    db = tmp_path_factory.mktemp("akismet-fuzz") / "feedback.db"
    with mock.patch.dict(os.environ, server_env(), clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH), "max_text_chars": 300,
                           "max_body_bytes": 4096, "feedback_db": f"sqlite:///{db}", "akismet_api_keys": [KEY]})


def encoded(fields: list[tuple[str, str | bytes]], charset: str = "utf-8") -> bytes:
    """A urlencoded body; ``comment_*`` text values in ``charset`` (as Akismet defines blog_charset)."""
    out = []
    for name, value in fields:
        if isinstance(value, str):
            value = value.encode(charset if name.startswith("comment_") else "utf-8", "surrogatepass")
        out.append(quote_from_bytes(name.encode("utf-8")) + "=" + quote_from_bytes(value, safe=""))
    return "&".join(out).encode("ascii")


def multipart(fields: list[tuple[str, bytes]], boundary: bytes = b"modclf-7MA4YWxkTrZu0gW", files: dict[str, bytes] | None = None) -> bytes:
    parts = [b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, n.encode(), v) for n, v in fields]
    parts += [b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="x.txt"\r\nContent-Type: text/plain\r\n\r\n%s\r\n'
              % (boundary, n.encode(), v) for n, v in (files or {}).items()]
    return b"".join(parts) + b"--%s--\r\n" % boundary


def answer(r) -> str:
    assert r.status_code == 200, (r.status_code, r.get_data()[:300])
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    return r.get_data(as_text=True)


def assert_store_is_clean(app) -> None:
    """Everything stored is valid Unicode (no lone surrogate, no NUL) and the export still works."""
    for decision in app.extensions["modclf_feedback"].decisions():
        decision.text.encode("utf-8")  # strict: raises on a lone surrogate
        assert "\x00" not in decision.text and "\x00" not in decision.source
    r = app.test_client().get("/v1/feedback/export")
    assert r.status_code == 200
    r.get_data().decode("utf-8")


def test_verify_key_takes_api_key_and_the_older_key(fuzz_app) -> None:
    client = fuzz_app.test_client()
    for name in ("api_key", "key"):
        r = client.post(f"{V11}/verify-key", data={name: KEY, "blog": BLOG})
        assert answer(r) == "valid" and "X-akismet-debug-help" not in r.headers
        r = client.post(f"{V11}/verify-key", data={name: "wrong", "blog": BLOG})
        assert answer(r) == "invalid" and r.headers["X-akismet-debug-help"] == "Invalid API key"
    assert answer(client.post(f"{V11}/verify-key", data={"api_key": KEY, "key": "older-wrong", "blog": BLOG})) == "valid"
    r = client.post(f"{V11}/verify-key", data={"blog": BLOG})
    assert answer(r) == "invalid" and 'Empty "api_key" value' in r.headers["X-akismet-debug-help"]
    for blog in ("", "news.example.org", "http://[", "http://[::1", "javascript:alert(1)", "http://"):
        r = client.post(f"{V11}/verify-key", data={"api_key": KEY, "blog": blog})
        assert answer(r) == "invalid" and "blog" in r.headers["X-akismet-debug-help"]


def test_key_as_subdomain(fuzz_app) -> None:
    """Akismet's older style: POST https://<key>.rest.akismet.com/1.1/comment-check, no key in the body."""
    client = fuzz_app.test_client()
    fields = {"blog": BLOG, "user_ip": "192.0.2.1", "comment_content": ORDINARY}
    r = client.post(f"{V11}/comment-check", data=fields, base_url=f"http://{KEY}.akismet.example.org:8000")
    assert answer(r) == "false"
    r = client.post(f"{V11}/comment-check", data={**fields, "comment_content": LINK_DROP}, base_url=f"http://{KEY}.localhost")
    assert answer(r) == "true"
    r = client.post(f"{V11}/comment-check", data=fields, base_url="http://not-a-key.akismet.example.org")
    assert answer(r) == "invalid" and "Host" in r.headers["X-akismet-debug-help"]
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "a1b2c3d4e5f6"):  # no subdomain to take a key from
        r = client.post(f"{V11}/comment-check", data=fields, base_url=f"http://{host}")
        assert answer(r) == "invalid" and r.headers["X-akismet-debug-help"] == 'Empty "api_key" value'
    r = client.post(f"{V11}/comment-check", data={**fields, "api_key": "wrong"}, base_url=f"http://{KEY}.localhost")
    assert answer(r) == "invalid"  # a key in the body is the one that counts
    r = client.post(f"{V11}/verify-key", data={"blog": BLOG}, base_url=f"http://{KEY}.localhost")
    assert answer(r) == "invalid"  # verify-key reads its key from the body only
    with mock.patch("modclf.serving.integrations.akismet.record_or_503", return_value="created") as record:
        r = client.post(f"{V11}/submit-spam", data={**fields, "comment_content": LINK_DROP}, base_url=f"http://{KEY}.localhost")
    assert answer(r) == SUBMISSION and record.call_count == 1


def test_every_documented_parameter_is_accepted(fuzz_app) -> None:
    client = fuzz_app.test_client()
    everything = form(user_agent="Mozilla/5.0 (X11; Linux x86_64)", referrer="https://www.example.com/",
                      permalink=f"{BLOG}2024/05/council-vote", comment_type="comment", comment_author="Maria",
                      comment_author_email="maria@example.org", comment_author_url="https://maria.example.org/",
                      comment_date_gmt="2024-05-01T10:00:00Z", comment_post_modified_gmt="2024-04-30T08:00:00Z",
                      blog_lang="en, fr_ca", blog_charset="UTF-8", user_role="subscriber", is_test="1",
                      recheck_reason="edit", honeypot_field_name="hidden_honeypot_field", hidden_honeypot_field="",
                      REMOTE_ADDR="192.0.2.1", HTTP_ACCEPT_LANGUAGE="en-GB")
    everything["comment_context[0]"], everything["comment_context[1]"] = "local news", "council"
    r = client.post(f"{V11}/comment-check", data={**everything, "comment_content": ORDINARY})
    assert answer(r) == "false" and "X-akismet-debug-help" not in r.headers
    r = client.post(f"{V11}/comment-check", data={**everything, "comment_content": LINK_DROP})
    assert answer(r) == "true" and "X-akismet-debug-help" not in r.headers
    for endpoint in ("submit-spam", "submit-ham"):  # is_test: answered, not stored
        before = len(fuzz_app.extensions["modclf_feedback"].decisions())
        assert answer(client.post(f"{V11}/{endpoint}", data={**everything, "comment_content": ORDINARY})) == SUBMISSION
        assert len(fuzz_app.extensions["modclf_feedback"].decisions()) == before


@pytest.mark.parametrize("fields,expected", [
    ({"comment_author": "akismet-guaranteed-spam"}, "true"),
    ({"comment_author": " Akismet-Guaranteed-Spam "}, "true"),
    ({"comment_author": "viagra-test-123"}, "true"),
    ({"comment_author_email": "akismet-guaranteed-spam@example.com"}, "true"),
    ({"user_role": "administrator", "comment_content": LINK_DROP}, "false"),
    ({"user_role": "administrator", "comment_author": "akismet-guaranteed-spam"}, "true"),
    ({"honeypot_field_name": "hp", "hp": "https://bot.example/"}, "true"),  # a filled honeypot
    ({"honeypot_field_name": "hp", "hp": "  "}, "false"),
    ({"honeypot_field_name": "hp"}, "false"),
    ({"honeypot_field_name": "comment_author", "comment_author": "Maria"}, "false"),  # not a honeypot: a parameter
    ({"honeypot_field_name": "hp", "hp": "x", "user_role": "administrator"}, "false"),
    ({"recheck_reason": "edit", "comment_content": LINK_DROP}, "true"),
])
def test_documented_test_values_and_honeypot(fuzz_app, fields: dict[str, str], expected: str) -> None:
    r = fuzz_app.test_client().post(f"{V11}/comment-check", data=form(**{"comment_content": ORDINARY, **fields}))
    assert answer(r) == expected and "X-akismet-debug-help" not in r.headers
    if fields.get("comment_content") != LINK_DROP:  # test values and honeypots: true, never discard
        assert "X-akismet-pro-tip" not in r.headers


def test_a_comment_longer_than_the_window_is_never_published_unread(fuzz_app) -> None:
    """Judged on its window (300 characters here); not approved, so Akismet's answer is true."""
    long_benign = " ".join([ORDINARY] * 30)
    r = fuzz_app.test_client().post(f"{V11}/comment-check", data=form(comment_content=long_benign))
    assert answer(r) == "true" and "window" in r.headers["X-modclf-reason"]
    assert "X-akismet-debug-help" not in r.headers  # clients read that header as an error
    buried = " ".join([ORDINARY] * 10 + [LINK_DROP] + [ORDINARY] * 10)
    assert answer(fuzz_app.test_client().post(f"{V11}/comment-check", data=form(comment_content=buried))) == "true"


def test_an_over_size_comment_check_fails_closed(fuzz_app) -> None:
    """Above the request cap (4 KiB here) comment-check still answers: the small fields are read,
    the text is skipped unread, and a valid request gets true (the spam queue)."""
    client = fuzz_app.test_client()
    huge = ORDINARY * 2000  # ~72 KB
    r = client.post(f"{V11}/comment-check", data=encoded([*form().items(), ("comment_content", huge)]), content_type=FORM)
    assert answer(r) == "true" and "X-akismet-pro-tip" not in r.headers and "X-akismet-debug-help" not in r.headers
    assert "cap" in r.headers["X-modclf-reason"]
    r = client.post(f"{V11}/comment-check", data=encoded([("comment_content", huge), *form().items()]), content_type=FORM)
    assert answer(r) == "true"  # the small fields after the text are read too
    r = client.post(f"{V11}/comment-check", data=encoded([*form(api_key="wrong").items(), ("comment_content", huge)]),
                    content_type=FORM)
    assert answer(r) == "invalid"
    r = client.post(f"{V11}/comment-check", data=encoded([*form(user_ip="").items(), ("comment_content", huge)]),
                    content_type=FORM)
    assert answer(r) == "Missing required field: user_ip."
    r = client.post(f"{V11}/comment-check", data=encoded([*form(user_role="administrator").items(), ("comment_content", huge)]),
                    content_type=FORM)
    assert answer(r) == "false"  # Akismet: administrator always gives false
    r = client.post(f"{V11}/submit-spam", data=encoded([*form().items(), ("comment_content", huge)]), content_type=FORM)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "payload_too_large"  # not a verdict: refused
    body = multipart([(k, v.encode()) for k, v in form(comment_content=huge).items()])
    r = client.post(f"{V11}/comment-check", data=body, content_type="multipart/form-data; boundary=modclf-7MA4YWxkTrZu0gW")
    assert r.status_code == 413


def test_1_2_endpoints_are_a_clear_404(fuzz_app) -> None:
    client = fuzz_app.test_client()
    for name in ("usage-limit", "key-sites", "comment-check", "x/y"):
        for r in (client.get(f"/akismet/1.2/{name}?api_key={KEY}"), client.post(f"/akismet/1.2/{name}", data={"api_key": KEY})):
            assert r.status_code == 404
            error = r.get_json()["error"]
            assert error["code"] == "not_found" and "usage-limit" in error["message"] and "subscription" in error["message"]


@pytest.mark.parametrize("charset", NOT_TEXT_CHARSETS, ids=lambda c: ascii(c[:20]))
def test_charsets_that_are_not_text_encodings_read_as_utf8(fuzz_app, charset: str) -> None:
    client = fuzz_app.test_client()
    text = f"Très bien, merci pour l'article {NOT_TEXT_CHARSETS.index(charset)} «ok»"
    fields = [*form().items(), ("blog_charset", charset.encode("latin-1")), ("comment_content", text)]
    assert answer(client.post(f"{V11}/comment-check", data=encoded(fields), content_type=FORM)) in ("true", "false")
    assert answer(client.post(f"{V11}/submit-spam", data=encoded(fields), content_type=FORM)) == SUBMISSION
    assert text in [d.text for d in fuzz_app.extensions["modclf_feedback"].decisions()]  # read as UTF-8


@pytest.mark.parametrize("charset,content", [
    ("utf-16", b"\xff\xfe" + b"\x00\xd8" + "lone high surrogate".encode("utf-16-le")),
    ("utf-16-le", "pair ok \U0001f600 then lone ".encode("utf-16-le") + b"\x00\xdc"),
    ("utf-16-be", b"\xd8\x00\x00a"),
    ("utf-32", b"\xff\xfe\x00\x00" + b"\x00\xd8\x00\x00" + "x".encode("utf-32-le")),
    ("utf-7", b"utf-7 makes +2AA- a lone surrogate"),
    ("utf-7", b"+2D3eAA- a pair, +2D0- a lone one"),
    ("unicode_escape", b"escapes \\ud800 are refused"),
    ("raw_unicode_escape", b"\\udfff too"),
    ("utf-8", b"encoded surrogate \xed\xa0\x80 and NUL \x00 here"),
    ("latin-1", b"NUL \x00 in latin-1"),
])
def test_lone_surrogates_and_nul_never_reach_the_store(fuzz_app, charset: str, content: bytes) -> None:
    client = fuzz_app.test_client()
    fields = [*form().items(), ("blog_charset", charset), ("comment_content", content), ("comment_author", content)]
    assert answer(client.post(f"{V11}/comment-check", data=encoded(fields), content_type=FORM)) in ("true", "false")
    assert answer(client.post(f"{V11}/submit-spam", data=encoded(fields), content_type=FORM)) == SUBMISSION
    body = multipart([(n, v if isinstance(v, bytes) else v.encode()) for n, v in fields])
    r = client.post(f"{V11}/submit-ham", data=body, content_type="multipart/form-data; boundary=modclf-7MA4YWxkTrZu0gW")
    assert answer(r) == SUBMISSION
    assert_store_is_clean(fuzz_app)


def test_multipart_forms(fuzz_app) -> None:
    client = fuzz_app.test_client()
    boundary = "multipart/form-data; boundary=modclf-7MA4YWxkTrZu0gW"
    text = "Réunion du conseil municipal: très bon résumé, merci."
    fields = [(k, v.encode()) for k, v in form(blog_charset="ISO-8859-1").items()] + [("comment_content", text.encode("latin-1"))]
    body = multipart(fields, files={"comment_author_url": b"https://example.org/"})  # a file part is a parameter too
    assert answer(client.post(f"{V11}/submit-ham", data=body, content_type=boundary)) == SUBMISSION
    stored = {d.text: d for d in fuzz_app.extensions["modclf_feedback"].decisions()}
    assert stored[text].label == "ham"
    assert answer(client.post(f"{V11}/verify-key", data=multipart([("api_key", KEY.encode()), ("blog", BLOG.encode())]),
                              content_type=boundary)) == "valid"
    for content_type, data in [("multipart/form-data", body),  # no boundary
                               (boundary, body[:-30]),  # cut short
                               (boundary, b"--modclf-7MA4YWxkTrZu0gW\r\nno disposition\r\n\r\nx\r\n--modclf-7MA4YWxkTrZu0gW--\r\n"),
                               (boundary, b"--modclf-7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"\xff\xfe\"\r\n\r\n")]:
        r = client.post(f"{V11}/comment-check", data=data, content_type=content_type)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_body", r.get_data()[:200]
    many = "&".join(["a"] * 1001)  # 1001 fields in 2 KB
    r = client.post(f"{V11}/submit-spam", data=many, content_type=FORM)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "payload_too_large"  # not a verdict: refused


def _part(name: str, value: bytes, extra: bytes = b"", boundary: bytes = b"modclf-7MA4YWxkTrZu0gW") -> bytes:
    return b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n%s\r\n%s\r\n' % (boundary, name.encode(), extra, value)


def test_multipart_comment_in_a_file_part_or_a_transfer_encoding_is_read(fuzz_app) -> None:
    """A comment the service did not read must not get false (published): a file part is read as the
    parameter, base64 and quoted-printable parts are decoded, any other encoding is held unread."""
    client = fuzz_app.test_client()
    boundary = "multipart/form-data; boundary=modclf-7MA4YWxkTrZu0gW"
    head = b"".join(_part(k, v.encode()) for k, v in form().items() if k != "comment_content")
    end = b"--modclf-7MA4YWxkTrZu0gW--\r\n"
    spam = LINK_DROP.encode()
    as_file = head + multipart([], files={"comment_content": spam})[:-len(end)] + end
    b64 = head + _part("comment_content", base64.b64encode(spam), b"Content-Transfer-Encoding: base64\r\n") + end
    qp = head + _part("comment_content", quopri.encodestring(spam), b"Content-Transfer-Encoding: quoted-printable\r\n") + end
    for body in (as_file, b64, qp):
        assert answer(client.post(f"{V11}/comment-check", data=body, content_type=boundary)) == "true"
    ordinary = head + _part("comment_content", base64.b64encode(ORDINARY.encode()), b"Content-Transfer-Encoding: base64\r\n") + end
    assert answer(client.post(f"{V11}/comment-check", data=ordinary, content_type=boundary)) == "false"
    odd = head + _part("comment_content", b"begin 644 x", b"Content-Transfer-Encoding: x-uuencode\r\n") + end
    r = client.post(f"{V11}/comment-check", data=odd, content_type=boundary)
    assert answer(r) == "true" and "x-uuencode" in r.headers["X-modclf-reason"]
    r = client.post(f"{V11}/submit-spam", data=odd, content_type=boundary)  # not a verdict: refused, named
    assert r.status_code == 400 and "x-uuencode" in r.get_json()["error"]["message"]


def test_more_fields_than_the_limit_is_held_not_refused(fuzz_app) -> None:
    """Clients forward the commenter's request headers as HTTP_* fields, so the commenter controls how
    many fields there are: comment-check answers true (spam queue) unread rather than a refusal,
    which a client reads as "no opinion" and publishes; under the body cap and above it alike."""
    client = fuzz_app.test_client()
    padding = [(f"HTTP_X_{i}", "1") for i in range(1000)]
    for fields in ([*form(comment_content=LINK_DROP).items(), *padding], [*padding, *form(comment_content=ORDINARY).items()]):
        r = client.post(f"{V11}/comment-check", data=encoded(fields), content_type=FORM)
        assert r.status_code == 200 and answer(r) == "true" and "form fields" in r.headers["X-modclf-reason"]
    huge = [*padding, *form(comment_content=ORDINARY * 2000).items()]  # above the 4 KiB cap: streamed
    r = client.post(f"{V11}/comment-check", data=encoded(huge), content_type=FORM)
    assert r.status_code == 200 and answer(r) == "true"
    assert answer(client.post(f"{V11}/comment-check", data=encoded([*form(comment_content=ORDINARY).items(),
                                                                   *padding[:200]]),
                              content_type=FORM)) == "false"  # under the limit (and the cap): read and judged


@pytest.mark.parametrize("text", ["Muy buen artículo, gracias por explicar tan bien lo que pasó en el pueblo ayer.",
                                  "Bardzo dobry artykuł, dziękuję za rzetelne wyjaśnienie tego, co się wczoraj stało."])
def test_a_comment_held_for_its_language_is_never_published(fuzz_app, text: str) -> None:
    """The policy holds what the model cannot read (floor unsupported_language); Akismet has no hold
    answer and false would publish it, so the answer is true with the reason."""
    verdict = fuzz_app.extensions["modclf"].moderator.classify([text])[0]
    assert verdict.action != "approve" and verdict.language not in ("en", "und")
    r = fuzz_app.test_client().post(f"{V11}/comment-check", data=form(comment_content=text))
    assert answer(r) == "true" and "language" in r.headers["X-modclf-reason"]


def test_a_comment_with_a_part_in_another_language_is_never_published(fuzz_app) -> None:
    """English around a Russian insult reads as English as a whole; the part is held all the same."""
    english = "Thanks for the great article, I really enjoyed reading it and I agree with the points made here."
    r = fuzz_app.test_client().post(f"{V11}/comment-check", data=form(
        comment_content=f"{english} Ты идиот и твоя статья полный бред, автор дебил. {english}"))
    assert answer(r) == "true" and "(CYRILLIC)" in r.headers["X-modclf-reason"]


def test_a_plug_in_the_author_name_is_held(fuzz_app) -> None:
    """Sites show the author name above the comment, linked to the author URL: the classic place for
    a link drop beside an innocent comment. An ordinary name is no signal."""
    client = fuzz_app.test_client()
    r = client.post(f"{V11}/comment-check", data=form(comment_content=ORDINARY,
                                                      comment_author="FREE MP3 DOWNLOAD www.syriamp3.com",
                                                      comment_author_url="https://www.syriamp3.com/free-mp3"))
    assert answer(r) == "true" and "author name" in r.headers["X-modclf-reason"]
    for name in ("Jane Doe", "Abu Mohammed", "Dr. Ahmed Hassan"):
        r = client.post(f"{V11}/comment-check", data=form(comment_content=ORDINARY, comment_author=name,
                                                          comment_author_url="https://janedoe.example.org/"))
        assert answer(r) == "false", name


def test_duplicates_first_occurrence_wins(fuzz_app) -> None:
    client = fuzz_app.test_client()
    body = encoded([("api_key", KEY), ("api_key", "wrong"), ("blog", BLOG), ("blog", "nonsense"), ("user_ip", "192.0.2.1"),
                    ("comment_content", ORDINARY), ("comment_content", LINK_DROP)])
    assert answer(client.post(f"{V11}/comment-check", data=body, content_type=FORM)) == "false"


# -- property-based: random forms over every Akismet field -----------------------------------------

CHARSETS = ["utf-8", "UTF8", "ISO-8859-1", "latin1", "windows-1252", "utf-16", "utf-16-be", "utf-32", "utf-7",
            "shift_jis", "euc-jp", "gb2312", "big5", "koi8-r", "cp437", "ascii", *NOT_TEXT_CHARSETS[:18], "x" * 80, ""]
_SPECIAL = st.sampled_from(["\ud800", "\udc00", "\ud83d\ude00", "\x00", "\ufeff", "é", "€", "\U0001d54f", "&", "=", "%",
                            "+", "%zz", "%e9", "\r\n", "--", '"', "<a href='http://x.example/'>x</a>", "&#xd800;"])
_TEXT = st.lists(st.one_of(st.text(max_size=12), _SPECIAL), max_size=8).map("".join)
_VALUES = st.one_of(_TEXT, st.binary(max_size=40),
                    st.sampled_from([KEY, BLOG, "192.0.2.1", LINK_DROP, ORDINARY, "akismet-guaranteed-spam", "administrator",
                                     "1", "true", "", "hp", "http://[", "viagra-test-123"]))
_NAMES = st.one_of(st.sampled_from(["api_key", "key", "blog", "user_ip", "user_agent", "referrer", "permalink", "comment_type",
                                    "comment_author", "comment_author_email", "comment_author_url", "comment_content",
                                    "comment_date_gmt", "comment_post_modified_gmt", "comment_context[]", "blog_lang",
                                    "blog_charset", "user_role", "is_test", "recheck_reason", "honeypot_field_name", "hp",
                                    "HTTP_USER_AGENT"]), _TEXT)
_GARBAGE = st.sampled_from([b"%", b"%z", b"%zz", b"%f", b"&&", b"=", b"==", b"+", b"\xff\xfe", b"%00", b"%ED%A0%80",
                            b"a=%C3", b";", b"\r\n", b"%%", b"=%", b"&=&"])


def _bytes(value: str | bytes, codec: str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode(codec, "surrogatepass")
    except Exception:  # not a codec, not a text codec, or unencodable here
        return value.encode("utf-8", "surrogatepass")


@st.composite
def akismet_requests(draw: st.DrawFn) -> tuple[str, bytes, str | None]:
    endpoint = draw(st.sampled_from(sorted(ANSWERS)))
    charset = draw(st.one_of(st.sampled_from(CHARSETS), _TEXT))
    likely = st.integers(0, 9).map(lambda i: i > 0)  # 90%: reach the verdict and the store most of the time
    fields: list[tuple[str, str | bytes]] = []
    if draw(likely):
        fields.append((draw(st.sampled_from(["api_key", "key"])) if endpoint == "verify-key" else "api_key",
                       KEY if draw(likely) else draw(_VALUES)))
    if draw(likely):
        fields.append(("blog", BLOG))
    if draw(likely):
        fields.append(("user_ip", "192.0.2.1"))
    if draw(likely):
        fields.append(("blog_charset", charset))
    if draw(likely):
        fields.append(("comment_content", draw(_VALUES)))
    fields += draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))  # any field, duplicates included
    if not draw(likely):
        fields = draw(st.permutations(fields))  # a duplicate may come first
    codec = charset if isinstance(charset, str) else "utf-8"
    encoded_fields = [(_bytes(n, "utf-8"), _bytes(v, codec if n.startswith("comment_") else "utf-8")) for n, v in fields]
    kind = draw(st.sampled_from(["urlencoded"] * 6 + ["multipart"] * 2 + ["no-type", "other-type"]))
    if kind == "multipart":
        boundary = b"modclf-7MA4YWxkTrZu0gW"
        body = b"".join(b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, n, v)
                        for n, v in encoded_fields) + b"--%s--\r\n" % boundary
        return endpoint, body, f"multipart/form-data; boundary={boundary.decode()}"
    segments = []
    for n, v in encoded_fields:
        raw = draw(st.integers(0, 9)) == 0  # sometimes not percent-encoded at all
        segments.append(n + b"=" + v if raw else (quote_from_bytes(n) + "=" + quote_from_bytes(v, safe="")).encode("ascii"))
        if draw(st.integers(0, 4)) == 0:
            segments.append(draw(_GARBAGE))
    body = b"&".join(segments)
    content_type = {"urlencoded": FORM, "no-type": None, "other-type": draw(st.sampled_from(["text/plain", "application/json"]))}[kind]
    return endpoint, body, content_type


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=akismet_requests())
def test_any_form_gets_a_documented_answer(fuzz_app, request: tuple[str, bytes, str | None]) -> None:
    endpoint, body, content_type = request
    headers = {"Content-Type": content_type} if content_type else {}
    r = fuzz_app.test_client().post(f"{V11}/{endpoint}", data=body, headers=headers)
    assert r.status_code < 500, r.get_data()[:500]
    event(f"{endpoint} {r.status_code} {r.get_data()[:40]!r}")
    if r.status_code != 200:
        assert r.get_json()["error"]["code"] in ERROR_CODES[r.status_code], (r.status_code, r.get_data()[:300])
        return
    text = answer(r)
    assert text in ANSWERS[endpoint], text
    debug = r.headers.get("X-akismet-debug-help")
    assert (debug is not None) == (text == "invalid" or text.startswith("Missing required field")), (text, debug)
    if debug is not None:
        debug.encode("latin-1")  # a header value HTTP can carry
    if r.headers.get("X-akismet-pro-tip") is not None:
        assert text == "true" and r.headers["X-akismet-pro-tip"] == "discard"
    if text == SUBMISSION:
        assert_store_is_clean(fuzz_app)
