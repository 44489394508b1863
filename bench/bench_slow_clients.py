#!/usr/bin/env python
"""Serving candidates side by side: do they keep answering while slow clients hold connections,
and what do they cost in throughput?

For each candidate (gunicorn with gevent, sync and gthread workers, as modclf.gunicorn_conf configures
them, and waitress as another WSGI server), on a free loopback port:

  1. slow clients: --slow connections are opened and left hanging, half of them after half of
     their headers, half after their headers and half of their body (slowloris and slow POST);
     then --probes ordinary POST /v1/classify calls are made one after another, each allowed
     --probe-timeout seconds. Reported: how many were answered, and the slowest answer.
  2. throughput: wrk (or the built-in load generator) on GET /healthz and POST /v1/classify with
     --connections connections for --duration seconds each; classify/healthz is the ratio the
     service targets (>= 0.5, p99 <= 25 ms at 16 connections).

Nothing is asserted: the test suite checks the shipped configuration (tests/test_hostile_http.py);
this compares the alternatives.

    python bench/bench_slow_clients.py                          # all candidates, model/
    python bench/bench_slow_clients.py --candidates gevent sync --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import free_port, load_texts, run_python, run_wrk, start_server  # noqa: E402

CANDIDATES = {
    # name: (server, worker_class, workers, threads)
    "gevent": ("gunicorn", "gevent", os.cpu_count() or 1, 1),  # as modclf.settings: one per CPU
    "sync": ("gunicorn", "sync", 2 * (os.cpu_count() or 1) + 1, 1),
    "gthread": ("gunicorn", "gthread", 2 * (os.cpu_count() or 1) + 1, 4),
    "waitress": ("waitress", "-", 1, 8),
}


def open_slow(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that stop mid-request: even ones mid-headers, odd ones mid-body."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2 == 0:
            s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        else:
            s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 60\r\n\r\n{\"text\": \"half a comm")
        socks.append(s)
    return socks


def probe(port: int, n: int, timeout: float) -> tuple[int, float]:
    """(answered, slowest seconds) for ``n`` sequential classify calls of at most ``timeout`` s."""
    answered, slowest = 0, 0.0
    body = json.dumps({"text": "Were the brigades directly involved in the assault?"}).encode()
    for _ in range(n):
        started = time.perf_counter()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/classify", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                answered += r.status == 200
        except OSError:
            pass
        slowest = max(slowest, time.perf_counter() - started)
    return answered, slowest


def main(argv: list[str] | None = None) -> int:
    from modclf.model import DEFAULT_MODEL_DIR

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: model/)")
    p.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES),
                   help="servers to compare (default: all)")
    p.add_argument("--slow", type=int, default=64, help="slow connections held open (default: %(default)s)")
    p.add_argument("--probes", type=int, default=10, help="classify calls made while they hang (default: %(default)s)")
    p.add_argument("--probe-timeout", type=float, default=3.0, help="seconds allowed per probe (default: %(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per throughput scenario (default: %(default)s)")
    p.add_argument("--connections", type=int, default=16, help="connections for throughput (default: %(default)s)")
    p.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto",
                   help="load generator (default: wrk when installed)")
    args = p.parse_args(argv)
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "python")
    singles = [json.dumps({"text": t}).encode() for t in load_texts(500, 0)]
    rows = []
    for name in args.candidates:
        server_kind, worker_class, workers, threads = CANDIDATES[name]
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
            workdir = Path(tmp)
            proc = start_server(args.model_dir, port, workers, threads, 256, workdir / "server.log",
                                worker_class=worker_class if worker_class != "-" else "sync", server=server_kind)
            try:
                base = f"http://127.0.0.1:{port}"

                def load(path: str, bodies: list[bytes] | None, label: str):
                    if tool == "wrk":
                        return run_wrk(base + path, bodies, args.connections, args.duration, os.cpu_count() or 1,
                                       label, 1, workdir)
                    return run_python(base + path, bodies, args.connections, args.duration, label, 1)

                load("/v1/classify", singles[:50], "warm-up")
                socks = open_slow(port, args.slow)
                answered, slowest = probe(port, args.probes, args.probe_timeout)
                for s in socks:
                    s.close()
                time.sleep(1.0)
                health = load("/healthz", None, "healthz")
                classify = load("/v1/classify", singles, "classify")
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        label = f"{server_kind} {worker_class} x{workers}" + (f" x{threads} threads" if threads > 1 else "")
        rows.append((label, answered, slowest, health.rps, classify.rps, classify.rps / health.rps,
                     classify.p99_ms, classify.errors))
        print(f"done: {label}", file=sys.stderr)
    print(f"\n{args.slow} slow connections held, {args.probes} classify probes of at most {args.probe_timeout:g} s; "
          f"throughput: {tool}, {args.connections} connections, {args.duration:g} s per scenario, "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}")
    print(f"{'candidate':<34}{'answered':>9}{'slowest s':>10}{'healthz/s':>11}{'classify/s':>11}"
          f"{'ratio':>7}{'p99 ms':>8}{'errors':>7}")
    for label, answered, slowest, h, c, ratio, p99, errors in rows:
        print(f"{label:<34}{answered:>5}/{args.probes:<3}{slowest:>10.2f}{h:>11.0f}{c:>11.0f}{ratio:>7.2f}{p99:>8.1f}{errors:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
