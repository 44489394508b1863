"""End to end: the real gunicorn server (modclf.gunicorn_conf) and serve.py, over HTTP on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from modclf.policy import DEFAULT_POLICY_PATH

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SPAM = "Earn $500 a day from home!!! Click www.easy-cash-now.com and sign up today, limited offer"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODCLF_", "_MODCLF_", "PROMETHEUS_"))}
    env.update(extra)
    return env


def set_version(model_dir: Path, version: str) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    meta["model_version"] = version
    (model_dir / "model.json").write_text(json.dumps(meta))


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server at {url} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Gunicorn:
    def __init__(self, proc: subprocess.Popen, url: str, model_dir: Path):
        self.proc, self.url, self.model_dir = proc, url, model_dir

    def classify(self, text: str = SPAM) -> requests.Response:
        # a new connection per request, as independent clients would
        return requests.post(f"{self.url}/v1/classify", json={"text": text}, timeout=30)


@pytest.fixture(scope="module")
def gunicorn(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    live = tmp_path_factory.mktemp("gunicorn") / "model"
    shutil.copytree(model_dir, live)
    set_version(live, "e2e-1")
    port = free_port()
    env = server_env(MODCLF_BIND=f"127.0.0.1:{port}", MODCLF_MODEL_DIR=str(live),
                     MODCLF_POLICY=str(DEFAULT_POLICY_PATH), MODCLF_WORKERS="2", MODCLF_LOG_LEVEL="warning")
    log = live.parent / "gunicorn.log"
    with open(log, "w") as err:  # a file, not a pipe nobody reads: a full pipe would block the server
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:modclf.gunicorn_conf", "modclf.serving:create_app()"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield Gunicorn(proc, url, live)
    finally:
        stop(proc)


def test_gunicorn_classifies_over_http(gunicorn: Gunicorn) -> None:
    r = gunicorn.classify()
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["label"] == "spam" and body["action"] == "reject" and body["model_version"] == "e2e-1"
    batch = requests.post(f"{gunicorn.url}/v1/classify/batch", timeout=30,
                          json={"comments": [{"id": "a", "text": SPAM}, {"id": "b", "text": "Where is this?"}]})
    assert [r["id"] for r in batch.json()["results"]] == ["a", "b"]
    bad = requests.post(f"{gunicorn.url}/v1/classify", data=b"\xff", headers={"Content-Type": "application/json"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_utf8"
    assert requests.get(f"{gunicorn.url}/nowhere", timeout=30).json()["error"]["code"] == "not_found"


def test_gunicorn_rejects_oversized_bodies(gunicorn: Gunicorn) -> None:
    big = b'{"text": "' + b"a" * (2 << 20) + b'"}'
    r = requests.post(f"{gunicorn.url}/v1/classify", data=big, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    chunked = requests.post(f"{gunicorn.url}/v1/classify", data=iter([big[:1 << 20], big[1 << 20:]]),
                            headers={"Content-Type": "application/json"}, timeout=30)
    assert chunked.status_code == 413


def test_metrics_aggregate_all_workers(gunicorn: Gunicorn) -> None:
    def count() -> float:
        text = requests.get(f"{gunicorn.url}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "modclf_predictions_total" and s.labels == {"label": "spam", "action": "reject"}:
                    return s.value
        return 0.0

    before = count()
    for _ in range(20):  # spread over both workers by the kernel's accept queue
        assert gunicorn.classify().status_code == 200
    assert count() - before == 20


def _hammer(server: Gunicorn, stop_event: threading.Event, versions: Counter, failures: list[str],
            keep_alive: bool) -> None:
    session = requests.Session() if keep_alive else None
    while not stop_event.is_set():
        try:
            if session is not None:  # a kept-alive connection, as a client's connection pool keeps
                r = session.post(f"{server.url}/v1/classify", json={"text": SPAM}, timeout=30)
            else:
                r = server.classify()
            if r.status_code != 200:
                failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
            else:
                versions[r.json()["model_version"]] += 1
        except requests.RequestException as exc:
            failures.append(f"{type(exc).__name__}: {exc}")


def worker_pids(master: int) -> set[int]:
    """The gunicorn master's child processes (its workers), from /proc."""
    pids: set[int] = set()
    for task in Path(f"/proc/{master}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def _swap_under_load(server: Gunicorn, trigger, new_version: str) -> Counter:
    """Send requests from 4 threads (2 with new connections, 2 keep-alive) while ``trigger()`` swaps
    the model, until every worker that existed before has been replaced; return the versions seen."""
    stop_event, versions, failures = threading.Event(), Counter(), []
    threads = [threading.Thread(target=_hammer, args=(server, stop_event, versions, failures, k % 2 == 1))
               for k in range(4)]
    before = worker_pids(server.proc.pid)
    assert len(before) == 2
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        trigger()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = worker_pids(server.proc.pid)
            if not current & before and len(current) == 2:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the old workers were not replaced within 60 s")
        time.sleep(0.5)  # the new workers keep serving under load
    finally:
        stop_event.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    assert versions[new_version] > 0
    # every worker serves the new model now
    assert {server.classify().json()["model_version"] for _ in range(10)} == {new_version}
    return versions


def test_hup_swaps_the_model_with_no_failed_request(gunicorn: Gunicorn) -> None:
    old = gunicorn.classify().json()["model_version"]
    set_version(gunicorn.model_dir, "e2e-hup")
    versions = _swap_under_load(gunicorn, lambda: os.kill(gunicorn.proc.pid, signal.SIGHUP), "e2e-hup")
    assert versions[old] > 0  # requests were answered by the old model during the swap, too
    assert gunicorn.proc.poll() is None


def test_admin_reload_swaps_every_worker_with_no_failed_request(gunicorn: Gunicorn) -> None:
    set_version(gunicorn.model_dir, "e2e-admin")
    replies: list[dict] = []

    def trigger() -> None:
        r = requests.post(f"{gunicorn.url}/v1/admin/reload", timeout=60)
        assert r.status_code == 200, r.text
        replies.append(r.json())

    _swap_under_load(gunicorn, trigger, "e2e-admin")
    assert replies[0]["model_version"] == "e2e-admin" and replies[0]["scope"] == "all_workers"


def test_hup_with_a_broken_model_keeps_serving_the_old_one(gunicorn: Gunicorn) -> None:
    current = gunicorn.classify().json()["model_version"]
    meta_path = gunicorn.model_dir / "model.json"
    saved = meta_path.read_text()
    meta_path.write_text("{ not json")
    try:
        os.kill(gunicorn.proc.pid, signal.SIGHUP)
        time.sleep(3)
        assert {gunicorn.classify().json()["model_version"] for _ in range(6)} == {current}
        r = requests.post(f"{gunicorn.url}/v1/admin/reload", timeout=60)
        assert r.status_code == 409 and r.json()["error"]["code"] == "reload_failed"
    finally:
        meta_path.write_text(saved)
    assert gunicorn.proc.poll() is None


@pytest.mark.parametrize("cmd", [
    [sys.executable, "-m", "gunicorn", "-c", "python:modclf.gunicorn_conf", "modclf.serving:create_app()"],
    [sys.executable, "serve.py", "--port", "0"],
], ids=["gunicorn", "serve.py"])
def test_servers_refuse_to_start_on_a_missing_model(cmd: list[str], tmp_path: Path) -> None:
    env = server_env(MODCLF_BIND=f"127.0.0.1:{free_port()}", MODCLF_MODEL_DIR=str(tmp_path / "none"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "[INFO]" not in line]
    assert len(lines) == 1, proc.stderr
    assert "model metadata not found" in lines[0] and "Traceback" not in proc.stderr


def test_serve_py_refuses_a_tampered_model(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    with open(bad / "model.joblib", "ab") as fh:
        fh.write(b"x")
    proc = subprocess.run([sys.executable, "serve.py", "--model-dir", str(bad)], cwd=ROOT, env=server_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "sha256" in proc.stderr and proc.stderr.startswith("error:")


def test_serve_py_development_server_classifies(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "serve.py", "--dev", "--port", str(port), "--model-dir", str(model_dir)],
                                cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, log)
        r = requests.post(f"{url}/v1/classify", json={"text": SPAM}, timeout=30)
        assert r.status_code == 200 and r.json()["label"] == "spam"
    finally:
        stop(proc)


def test_modclf_serve_runs_gunicorn_from_the_settings(model_dir: Path, tmp_path: Path) -> None:
    """`modclf serve` (what `make serve` runs): checks, then becomes a gunicorn master (same pid)."""
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "modclf", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                 "--model-dir", str(model_dir)], cwd=tmp_path, env=server_env(),
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, log)
        r = requests.post(f"{url}/v1/classify", json={"text": SPAM}, timeout=30)
        assert r.status_code == 200 and r.json()["action"] == "reject" and r.json()["policy_version"]
        assert "gunicorn" in (log.read_text() + Path(f"/proc/{proc.pid}/cmdline").read_text())
    finally:
        stop(proc)
