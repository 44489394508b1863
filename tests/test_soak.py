"""Load with faults: a bounded soak against the real gunicorn server (loopback only).

For SOAK_SECONDS (default 60) several client threads mix ordinary traffic (classify, batch, Coral,
Akismet, feedback writes) with slow clients and the bad inputs of tests/test_hostile_http.py.
Afterwards: no 5xx was answered (except the documented 501 for unknown transfer codings, which
this soak does not send), every feedback write the server acknowledged is in the export, and the
workers' memory stayed flat.

Not part of `make test` (it takes over a minute): run it with `make soak`.
"""

from __future__ import annotations

import io
import os
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import requests

from modclf.csvsafe import restore_cell

from .integrations_support import LINK_DROP, ORDINARY, coral_body, coral_headers, coral_request, start_server
from .test_hostile_http import FRAMING, request_bytes

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
CORAL_SECRET = "soak-coral-secret-0123456789"
AKISMET_KEY = "soak-akismet-key-0123456789"
TEXTS = [ORDINARY, LINK_DROP, "That is simply false, read the report again.", "Were the brigades involved?",
         "Thank you Iran", "x" * 15_000 + " www.cheap-pills.example " + "y" * 5_000, "\ud800 lone", "=HYPERLINK(1)"]


def worker_rss_kb(master_pid: int) -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().split()
            if int(stat[3]) == master_pid:
                rss = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("VmRSS"))
                out[int(entry.name)] = int(rss.split()[1])
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return out


def test_soak_mixed_traffic_and_faults(model_dir: Path, tmp_path: Path) -> None:
    env = {"MODCLF_MODEL_DIR": str(model_dir), "MODCLF_FEEDBACK_DB": f"sqlite:///{tmp_path / 'feedback.db'}",
           "CORAL_SIGNING_SECRET": CORAL_SECRET, "AKISMET_API_KEYS": AKISMET_KEY, "MODCLF_BODY_TIMEOUT": "2",
           "MODCLF_WORKERS": "0"}
    server = start_server("gunicorn", tmp_path / "server.log", env)
    port = int(server.url.rsplit(":", 1)[1])
    statuses: Counter[int] = Counter()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS
    samples: list[dict[int, int]] = []

    def record(status: int) -> None:
        with lock:
            statuses[status] += 1

    def normal(seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as s:
            i = 0
            while time.monotonic() < stop:
                i += 1
                text = rng.choice(TEXTS)
                kind = i % 5
                try:
                    if kind == 0:
                        r = s.post(f"{server.url}/v1/classify", json={"text": text}, timeout=10)
                    elif kind == 1:
                        r = s.post(f"{server.url}/v1/classify/batch", json={"comments": [{"text": t} for t in TEXTS]}, timeout=10)
                    elif kind == 2:
                        body = coral_body(coral_request(text.encode("utf-8", "replace").decode()))
                        r = s.post(f"{server.url}/integrations/coral", data=body, headers=coral_headers(body, (CORAL_SECRET,)), timeout=10)
                    elif kind == 3:
                        r = s.post(f"{server.url}/akismet/1.1/comment-check", timeout=10, data={
                            "api_key": AKISMET_KEY, "blog": "https://n.example", "user_ip": "192.0.2.1",
                            "comment_content": text.encode("utf-8", "replace")})
                    else:
                        fid = f"soak-{seed}-{i}"
                        r = s.post(f"{server.url}/v1/feedback", json={"id": fid, "text": text, "label": "spam"}, timeout=10)
                        if r.status_code in (200, 201):
                            with lock:
                                acknowledged.add(fid)
                    record(r.status_code)
                except requests.RequestException:
                    record(-1)

    def faulty(seed: int) -> None:
        rng = random.Random(seed)
        names = list(FRAMING)
        while time.monotonic() < stop:
            headers, body = FRAMING[rng.choice(names)]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(request_bytes("POST", "/v1/classify", headers, body))
                    sock.shutdown(socket.SHUT_WR)
                    head = sock.recv(64)
                if head.startswith(b"HTTP/1."):
                    record(int(head.split(b" ", 2)[1]))
            except OSError:
                pass
            time.sleep(0.02)  # a steady trickle of bad requests, not a flood that starves the rest

    def slow(seed: int) -> None:
        while time.monotonic() < stop:
            socks = []
            for _ in range(16):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"te")
                    socks.append(s)
                except OSError:
                    pass
            time.sleep(3)
            for s in socks:
                s.close()

    def sampler() -> None:
        time.sleep(min(10.0, SECONDS / 4))  # after warm-up: lazy imports, first requests
        while time.monotonic() < stop:
            samples.append(worker_rss_kb(server.proc.pid))
            time.sleep(2)

    threads = [threading.Thread(target=normal, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=faulty, args=(100 + k,)) for k in range(2)]
    threads += [threading.Thread(target=slow, args=(200,)), threading.Thread(target=sampler)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        export = requests.get(f"{server.url}/v1/feedback/export", timeout=60)
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    fives = {s: n for s, n in statuses.items() if s >= 500}
    assert not fives, (fives, statuses)
    assert statuses[200] > 100, statuses
    stored = {restore_cell(i) for i in pd.read_csv(io.StringIO(export.text), dtype=str, keep_default_na=False)["id"]}
    missing = acknowledged - stored
    assert acknowledged and not missing, f"{len(missing)} acknowledged feedback writes missing"
    # memory: each worker that lived through the soak grew by less than 30 MB after warm-up
    first, last = samples[0], samples[-1]
    for pid in set(first) & set(last):
        assert last[pid] - first[pid] < 30_000, (pid, first[pid], last[pid])
    print(f"\nsoak {SECONDS:g}s: statuses {dict(statuses)}, {len(acknowledged)} feedback writes, "
          f"worker RSS MB first/last {[round(first[p] / 1024) for p in sorted(first)]} / "
          f"{[round(last.get(p, 0) / 1024) for p in sorted(first)]}")
