"""Hostile HTTP against the real production server: gunicorn with modclf.gunicorn_conf (the `make serve`
configuration: gevent workers, one per CPU), every secret set.

HTTP framing over raw sockets (malformed chunked bodies, truncated bodies, duplicate and absurd
headers, invented methods), slow clients that hold connections, over-long and over-cap comments on
every moderation path, and the size of /metrics under invented methods and paths. The rule
checked everywhere: a 4xx (or the integration's documented verdict), never a 5xx or a traceback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from .integrations_support import (LINK_DROP, Server, coral_body, coral_headers, coral_request, start_server)

pytestmark = pytest.mark.slow

API_KEY = "hostile-api-key-0123456789"
CORAL_SECRET = "hostile-coral-secret-0123456789"
AKISMET_KEY = "hostile-akismet-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PADDING = ("The council met again on Tuesday and the discussion about the bridge repairs went on for "
           "most of the evening, with residents from both sides of the river speaking. ")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("hostile")
    env = {"MODCLF_MODEL_DIR": str(model_dir), "MODCLF_FEEDBACK_DB": f"sqlite:///{work / 'feedback.db'}",
           "MODCLF_API_KEYS": API_KEY, "CORAL_SIGNING_SECRET": CORAL_SECRET, "AKISMET_API_KEYS": AKISMET_KEY,
           "MODCLF_WORKERS": "0", "MODCLF_MAX_BODY_BYTES": str(256 * 1024),  # workers 0: the default, as make serve
           "MODCLF_BODY_TIMEOUT": "3", "MODCLF_HEADER_TIMEOUT": "3"}
    srv = start_server("gunicorn", work / "server.log", env)
    try:
        yield srv
    finally:
        srv.stop()
    log = (work / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def raw(server: Server, data: bytes, *, shut_write: bool = False, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=timeout) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and _complete(out):
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1."), response[:200]
    return int(response.split(b" ", 2)[1])


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


JSON_HEAD = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
CHUNKED = {**JSON_HEAD, "Transfer-Encoding": "chunked"}

FRAMING = {
    "chunk size not hex": (CHUNKED, b"zz\r\n{}\r\n0\r\n\r\n"),
    "chunk missing terminator": (CHUNKED, b'2\r\n{}XX0\r\n\r\n'),
    "chunk longer than declared": (CHUNKED, b'2\r\n{"text": "x"}\r\n0\r\n\r\n'),
    "negative chunk size": (CHUNKED, b"-5\r\n{}\r\n0\r\n\r\n"),
    "huge chunk size": (CHUNKED, b"fffffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
    "chunk extension garbage": (CHUNKED, b"2;\x00\x01=\r\n{}\r\n0\r\n\r\n"),
    "chunked with content-length": ({**CHUNKED, "Content-Length": "2"}, b"2\r\n{}\r\n0\r\n\r\n"),
    "two content-lengths": ({**JSON_HEAD, "Content-Length": "2", "content-length": "5"}, b"{}"),
    "content-length not a number": ({**JSON_HEAD, "Content-Length": "abc"}, b"{}"),
    "negative content-length": ({**JSON_HEAD, "Content-Length": "-1"}, b"{}"),
    "absurd content-length": ({**JSON_HEAD, "Content-Length": "9" * 40}, b"{}"),
    "content-length above the cap": ({**JSON_HEAD, "Content-Length": str(10 << 20)}, b"{}"),
    "duplicate content-type": ({**JSON_HEAD, "content-type": "text/plain", "Content-Length": "2"}, b"{}"),
    "NUL in a header": ({**JSON_HEAD, "X-Evil": "a\x00b", "Content-Length": "2"}, b"{}"),
}


@pytest.mark.parametrize("name", list(FRAMING))
def test_malformed_framing_is_a_4xx(server: Server, name: str) -> None:
    headers, body = FRAMING[name]
    response = raw(server, request_bytes("POST", "/v1/classify", headers, body), shut_write=True)
    assert response, f"{name}: no answer"
    assert 400 <= status_of(response) < 500, response[:300]
    assert b"Traceback" not in response


def test_unknown_transfer_coding_is_501_as_rfc_9112_requires(server: Server) -> None:
    """The one 5xx a client can cause, on purpose: RFC 9112 section 6.1 says a server that receives
    a transfer coding it does not understand responds 501 (Not Implemented). gunicorn does so
    before the app runs; no traceback, no worker lost."""
    headers = {**JSON_HEAD, "Transfer-Encoding": "gzip, zstd"}
    response = raw(server, request_bytes("POST", "/v1/classify", headers, b"{}"), shut_write=True)
    assert status_of(response) == 501 and b"Traceback" not in response
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_a_coding_before_chunked_is_501_not_read_as_the_comment(server: Server) -> None:
    """gunicorn undoes the chunking of "gzip, chunked" and hands the still-compressed bytes on; the
    body guard refuses them (501) instead of letting a view read them as the comment."""
    import gzip

    packed = gzip.compress(json.dumps({"text": "Buy followers at cheap-followers.biz"}).encode())
    body = f"{len(packed):x}\r\n".encode() + packed + b"\r\n0\r\n\r\n"
    for coding in ("gzip, chunked", "deflate,chunked"):
        response = raw(server, request_bytes("POST", "/v1/classify", {**JSON_HEAD, **AUTH, "Transfer-Encoding": coding},
                                             body), shut_write=True)
        assert status_of(response) == 501 and b"unsupported_transfer_coding" in response, response[:300]


def test_body_shorter_than_content_length_is_a_4xx(server: Server) -> None:
    started = time.monotonic()
    head = request_bytes("POST", "/v1/classify", {**JSON_HEAD, "Content-Length": "100"}, b'{"text": "x')
    response = raw(server, head, shut_write=True)
    assert 400 <= status_of(response) < 500 and time.monotonic() - started < 8


def test_stalled_body_is_408_after_the_body_timeout(server: Server) -> None:
    head = request_bytes("POST", "/v1/classify", {**JSON_HEAD, "Content-Length": "100"}, b'{"text": "x')
    started = time.monotonic()
    response = raw(server, head, timeout=15)  # the socket stays open: the client just stops
    assert status_of(response) == 408 and 2.5 < time.monotonic() - started < 10


@pytest.mark.parametrize("sent", [b"", b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nX-a: "])
def test_a_connection_without_a_complete_head_is_closed_after_the_head_timeout(server: Server, sent: bytes) -> None:
    """gunicorn's gevent worker waits for a request head for ever: 2,100 such connections made the
    server answer nobody. modclf.gunicorn_worker gives each MODCLF_HEADER_TIMEOUT (3 s here)."""
    started = time.monotonic()
    response = raw(server, sent, timeout=15)  # the socket stays open: the client just sends nothing more
    assert status_of(response) == 408 and 2.5 < time.monotonic() - started < 10
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("request_line", [b"FOOBAR /v1/classify HTTP/1.1", b"GET /\x00 HTTP/1.1",
                                          b"GET / HTTP/9.9", b"GET " + b"/a" * 5000 + b" HTTP/1.1",
                                          b"\xff\xfe\r\n", b"GET /v1/model HTTP/1.1\r\nX: " + b"y" * 20000])
def test_garbage_request_lines_are_4xx(server: Server, request_line: bytes) -> None:
    response = raw(server, request_line + b"\r\nHost: x\r\n\r\n", shut_write=True)
    assert response and 400 <= status_of(response) < 500, response[:200]


def test_many_headers_are_4xx(server: Server) -> None:
    headers = {f"X-H{i}": "v" for i in range(200)}
    response = raw(server, request_bytes("GET", "/healthz", headers), shut_write=True)
    assert 400 <= status_of(response) < 500


# -- slow clients ---------------------------------------------------------------------------------


def test_service_answers_while_64_clients_stall(server: Server) -> None:
    socks = []
    try:
        for i in range(64):
            s = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
            if i % 2:
                s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: appl")  # half the headers
            else:
                s.sendall(request_bytes("POST", "/v1/classify", {**JSON_HEAD, "Content-Length": "60"}, b'{"text": "ha'))
            socks.append(s)
        answered = 0
        for _ in range(10):
            try:
                r = requests.post(f"{server.url}/v1/classify", json={"text": "Were the brigades involved?"},
                                  headers=AUTH, timeout=3)
                answered += r.status_code == 200
            except requests.RequestException:
                pass
        assert answered == 10
    finally:
        for s in socks:
            s.close()


# -- fail closed over real HTTP -------------------------------------------------------------------


def buried(total: int) -> str:
    pad = PADDING * (total // len(PADDING) + 1)
    return pad[: total // 2] + " " + LINK_DROP + " " + pad[: total // 2]


def test_padded_link_drop_is_never_approved_on_any_path(server: Server) -> None:
    text = buried(12_000)
    r = requests.post(f"{server.url}/v1/classify", json={"text": text}, headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["truncated"] and r.json()["action"] != "approve"
    body = coral_body(coral_request(text))
    r = requests.post(f"{server.url}/integrations/coral", data=body, headers=coral_headers(body, (CORAL_SECRET,)), timeout=10)
    assert r.status_code == 200 and r.json()["status"] in ("SYSTEM_WITHHELD", "REJECTED")
    form = {"api_key": AKISMET_KEY, "blog": "https://news.example", "user_ip": "198.51.100.4", "comment_content": text}
    r = requests.post(f"{server.url}/akismet/1.1/comment-check", data=form, timeout=10)
    assert r.status_code == 200 and r.text == "true"


def test_coral_over_the_cap_chunked_is_withheld(server: Server) -> None:
    body = coral_body(coral_request("spam " * 120_000))  # 600 kB > the 256 kB cap of this server

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 50_000):
            yield body[i:i + 50_000]

    r = requests.post(f"{server.url}/integrations/coral", data=chunks(), headers=coral_headers(body, (CORAL_SECRET,)),
                      timeout=20)
    assert r.status_code == 200 and r.json() == {"status": "SYSTEM_WITHHELD"}


def test_json_over_the_cap_is_413(server: Server) -> None:
    r = requests.post(f"{server.url}/v1/classify", data=json.dumps({"text": "a" * 300_000}),
                      headers={**AUTH, "Content-Type": "application/json"}, timeout=20)
    assert r.status_code == 413


# -- metrics ----------------------------------------------------------------------------------------


def test_metrics_do_not_grow_with_invented_methods_and_paths(server: Server) -> None:
    def burst(start: int, n: int) -> None:
        with requests.Session() as session:
            for i in range(start, start + n):
                session.request(f"M{i:06d}", f"{server.url}/v1/x{i}", headers=AUTH, timeout=5)
                session.get(f"{server.url}/nope/{i}?q={i}", timeout=5)

    burst(0, 100)
    before = len(requests.get(f"{server.url}/metrics", timeout=5).content)
    threads = [threading.Thread(target=burst, args=(1000 + k * 500, 500)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "M001" not in after and "/nope/" not in after
    # counters' values get longer (more digits), label sets do not multiply
    assert len(after.encode()) < before + 2000, (before, len(after))
