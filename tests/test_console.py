"""The moderation console at /moderate/: login, CSRF, escaping (Flask test client), and end to end in
headless Chromium against the real gunicorn server (Playwright driving the system's /usr/bin/chromium;
skipped with the reason where it or Playwright is missing)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import pytest
import requests

from modclf.serving import create_app

from .integrations_support import ROOT, start_server

ADMIN = "admin-key-for-console-tests-0123"
REVIEW_ALL = "labels:\n  spam:\n    - {at_least: 0.0, action: review}\ndefault: review\n"
DISPUTE = "This is simply false, the author clearly has no idea what he is talking about."
XSS = 'Nice <script>window.pwned=1;alert("x")</script> and <img src=x onerror="window.pwned=2"> really'
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def make_app(model_dir: Path, tmp_path: Path, **config: Any):
    policy = tmp_path / "policy.yaml"
    policy.write_text(REVIEW_ALL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODCLF_", "CORAL_", "AKISMET_"))}
    with mock.patch.dict(os.environ, env, clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(policy),
                           "feedback_db": f"sqlite:///{tmp_path / 'store.db'}", **config})


def csrf(html: str) -> str:
    match = re.search(r'(?:name="csrf_token"|id="csrf") value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def login(client, key: str = ADMIN):
    token = csrf(client.get("/moderate/login").get_data(as_text=True))
    return client.post("/moderate/login", data={"key": key, "csrf_token": token})


@pytest.fixture()
def keyed(model_dir: Path, tmp_path: Path):
    return make_app(model_dir, tmp_path, admin_api_keys=ADMIN)


def test_the_console_needs_a_login_with_an_admin_key(keyed) -> None:
    client = keyed.test_client()
    r = client.get("/moderate/")
    assert r.status_code == 303 and r.headers["Location"].endswith("/moderate/login")
    assert login(client, "not-the-key-0123456789").status_code == 401
    ok = login(client)
    assert ok.status_code == 303
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/moderate" in cookie
    assert ADMIN not in cookie  # only a digest of the key is in the (signed, readable) cookie
    assert client.get("/moderate/").status_code == 200
    assert client.get("/moderate/decisions").status_code == 200


def test_login_and_decisions_need_the_csrf_token(keyed) -> None:
    client = keyed.test_client()
    client.get("/moderate/login")
    r = client.post("/moderate/login", data={"key": ADMIN, "csrf_token": "forged"})
    assert r.status_code == 403
    login(client)
    client.post("/v1/classify", json={"text": DISPUTE})
    html = client.get("/moderate/").get_data(as_text=True)
    item_id = re.search(r'data-id="(\d+)"', html).group(1)
    assert client.post(f"/moderate/decide/{item_id}", json={"action": "approve"}).status_code == 403
    r = client.post(f"/moderate/decide/{item_id}", json={"action": "approve"}, headers={"X-CSRF-Token": csrf(html)})
    assert r.status_code == 200 and r.get_json()["pending"] == 0


def test_a_session_ends_when_its_key_is_removed(model_dir: Path, tmp_path: Path) -> None:
    client = make_app(model_dir, tmp_path, admin_api_keys=ADMIN, console_secret="s" * 32).test_client()
    login(client)
    cookie = client.get_cookie("modclf_console", path="/moderate")
    other = make_app(model_dir, tmp_path, admin_api_keys="another-admin-key-0123456789",
                     console_secret="s" * 32).test_client()  # same secret, the key was rotated
    other.set_cookie("modclf_console", cookie.value, path="/moderate")
    assert other.get("/moderate/").status_code == 303


def test_comments_are_escaped_and_the_page_forbids_inline_script(keyed) -> None:
    client = keyed.test_client()
    login(client)
    client.post("/v1/classify", json={"text": XSS})
    r = client.get("/moderate/")
    html = r.get_data(as_text=True)
    assert "<script>window" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=" in html
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["Cache-Control"] == "no-store"


def test_ids_are_isolated_and_redirects_do_not_trust_the_host_header(keyed) -> None:
    client = keyed.test_client()
    login(client)
    client.post("/v1/classify", json={"text": XSS, "id": "c-\u202e1gnp.exe"})
    html = client.get("/moderate/").get_data(as_text=True)
    assert "<bdi>c-\u202e1gnp.exe</bdi>" in html  # a bidi override in an id cannot reorder the line around it
    r = client.get("/moderate", headers={"Host": "evil.example"})
    assert r.status_code == 308 and r.headers["Location"] == "/moderate/"


def test_without_keys_the_console_is_open_and_says_so(model_dir: Path, tmp_path: Path) -> None:
    client = make_app(model_dir, tmp_path).test_client()
    r = client.get("/moderate/")
    assert r.status_code == 200 and "No admin key is configured" in r.get_data(as_text=True)


# -- in a real browser ----------------------------------------------------------------------------------


@pytest.fixture()
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_moderating_by_keyboard_in_chromium(browser, model_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(REVIEW_ALL)
    db = tmp_path / "store.db"
    server = start_server("gunicorn", tmp_path / "server.log", {
        "MODCLF_MODEL_DIR": str(model_dir), "MODCLF_POLICY": str(policy), "MODCLF_FEEDBACK_DB": f"sqlite:///{db}",
        "MODCLF_ADMIN_API_KEYS": ADMIN})
    try:
        texts = (DISPUTE, XSS, "Does anyone know which town this was filmed in? The article does not say.",
                 "Thank you for covering this, the interviews were really moving.")
        for n, text in enumerate(texts, start=1):
            assert requests.post(f"{server.url}/v1/classify", json={"text": text}, timeout=30).json()["action"] == "review"
            # held comments are written off the request path, by whichever worker answered: wait for
            # this one, so that "oldest first" is the order they were sent in
            deadline = time.monotonic() + 15
            while requests.get(f"{server.url}/v1/queue", headers={"Authorization": f"Bearer {ADMIN}"},
                               timeout=30).json()["pending"] < n:
                assert time.monotonic() < deadline, f"comment {n} never reached the queue"
                time.sleep(0.05)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{server.url}/moderate/")
        assert page.url.endswith("/moderate/login")
        page.fill("#key", ADMIN)
        page.keyboard.press("Enter")
        page.wait_for_selector("#queue li.item")
        assert page.inner_text("#pending-count") == "4"
        first = page.locator("#queue li.item").first
        assert first.locator("p.text").inner_text() == DISPUTE
        highlighted = first.locator("mark").all_inner_texts()
        assert highlighted and all(word in DISPUTE for word in highlighted)
        # the attacker's HTML is text: no element was created from it and nothing ran
        xss = page.locator("#queue li.item").nth(1)
        assert xss.locator("p.text").inner_text() == XSS
        assert xss.locator("p.text script, p.text img").count() == 0
        assert page.evaluate("window.pwned") is None and dialogs == []
        page.screenshot(path=str(tmp_path / "queue.png"), full_page=True)
        docs_png = ROOT / "docs" / "console.png"  # the README's screenshot: refreshed on request only
        if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1" or not docs_png.exists():
            docs_png.parent.mkdir(exist_ok=True)
            shutil.copy(tmp_path / "queue.png", docs_png)
        # keyboard only: the first item is selected; a approves it
        first_id = first.get_attribute("data-id")
        page.keyboard.press("a")
        page.wait_for_selector(f"#item-{first_id}", state="detached")
        assert page.inner_text("#pending-count") == "3"
        # j moves down; l + type-ahead picks a label; r rejects with it
        second_id = page.locator("#queue li.item").first.get_attribute("data-id")
        page.keyboard.press("j")
        page.keyboard.press("k")
        page.keyboard.press("l")
        page.keyboard.press("s")  # "spam", the first option starting with s
        assert page.locator(f"#relabel-{second_id}").input_value() == "spam"
        page.keyboard.press("r")
        page.wait_for_selector(f"#item-{second_id}", state="detached")
        assert page.inner_text("#pending-count") == "2"
        page.screenshot(path=str(tmp_path / "after-decisions.png"), full_page=True)
        # both decisions reached the feedback store that retraining reads
        export = requests.get(f"{server.url}/v1/feedback/export", timeout=30)
        rows = {r["text"]: r for r in csv.DictReader(io.StringIO(export.text))}
        assert rows[DISPUTE]["label"] == "dispute" and rows[XSS]["label"] == "spam"
        queue = requests.get(f"{server.url}/v1/queue", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30).json()
        assert queue["pending"] == 2 and DISPUTE not in [i["text"] for i in queue["items"]]
        # the decisions view, and the page on a phone-sized screen
        page.goto(f"{server.url}/moderate/decisions")
        assert page.locator("table.recent tbody tr").count() == 2
        assert page.locator("svg.chart rect").count() >= 2
        page.screenshot(path=str(tmp_path / "decisions.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 375, "height": 740})
        phone.context.add_cookies(page.context.cookies())
        phone.goto(f"{server.url}/moderate/")
        phone.wait_for_selector("#queue li.item")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
        phone.screenshot(path=str(tmp_path / "queue-375.png"), full_page=True)
        assert dialogs == []
    finally:
        server.stop()


# -- long comments: shown and explained on the window the model read --------------------------------------


def queue_page_explaining(client) -> tuple[Any, list[int]]:
    """GET /moderate/, and the length of every text the page had explained (word_spans)."""
    from modclf.serving import console

    explained: list[int] = []
    real = console.word_spans

    def spy(model, text, label, **kw):
        explained.append(len(text))
        return real(model, text, label, **kw)

    with mock.patch.object(console, "word_spans", spy):
        return client.get("/moderate/"), explained


def test_a_long_comment_is_shown_and_explained_on_its_window(model_dir: Path, tmp_path: Path) -> None:
    """Many comments far longer than the model's window: the page carries and explains only each
    one's window (head, the buried link, tail) with a "(shortened: N characters not shown)" marker,
    so its size and cost are bounded by page size x window; the text stays escaped."""
    from modclf.window import bounded_window

    window, n, length = 2000, 6, 150_000
    app = make_app(model_dir, tmp_path, admin_api_keys=ADMIN, max_text_chars=window)
    client = app.test_client()
    login(client)
    filler = "The council met again on Tuesday and the report was discussed at length by everyone. "
    texts = []
    for i in range(n):
        middle = f" Cheap pills at www.pills-{i}.example <b>today</b> "
        text = (XSS + " " + filler * (length // len(filler)))[:length // 2] + middle + filler * (length // len(filler))
        texts.append(text[:length - i])
        assert client.post("/v1/classify", json={"text": texts[-1], "id": f"long-{i}"}).get_json()["truncated"]
    r, explained = queue_page_explaining(client)
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert len(explained) == n and max(explained) <= window  # only the window is explained
    assert len(html) < 30_000 + n * window * 3, len(html)  # not n x 150,000 characters
    items = re.findall(r'<li class="item".*?</li>', html, re.S)
    assert len(items) == n
    for i, (text, item) in enumerate(zip(texts, items)):
        shown = bounded_window(text, window).text
        omitted = len(text) - sum(len(p) for p in shown.split("\n...\n"))
        markers = re.findall(r'<em class="shortened">\n\(shortened: ([\d,]+) characters not shown\)\n</em>', item)
        assert markers and sum(int(m.replace(",", "")) for m in markers) == omitted  # one per left-out stretch
        assert f"{omitted:,} characters not shown" in item  # and the total, next to the label
        assert f"www.pills-{i}.example" in item  # the buried link is shown, as the model read it
    assert "<b>today</b>" not in html and "&lt;b&gt;today&lt;/b&gt;" in html  # escaped as before
    assert "<script>window" not in html and "&lt;script&gt;" in html
    assert '<mark class="' in html  # still highlighted


def test_a_page_explains_at_most_max_explain_chars(model_dir: Path, tmp_path: Path) -> None:
    """Explanations cost ~25 us a character in a worker that serves nothing else meanwhile: a page
    explains comments up to MODCLF_MAX_EXPLAIN_CHARS and shows the rest without highlights."""
    app = make_app(model_dir, tmp_path, admin_api_keys=ADMIN, max_text_chars=2000, max_explain_chars=5000)
    client = app.test_client()
    login(client)
    filler = "The council met again on Tuesday and the report was discussed at length by everyone. "
    for i in range(4):
        assert client.post("/v1/classify", json={"text": filler * 40 + f" www.pills-{i}.example", "id": f"b-{i}"}).status_code == 200
    r, explained = queue_page_explaining(client)
    html = r.get_data(as_text=True)
    assert len(explained) == 2 and sum(explained) <= 5000  # two windows of 2,000 fit, the third would not
    assert html.count("Not explained on this page") == 2
    assert all(f"www.pills-{i}.example" in html for i in range(4))  # every comment is still shown
