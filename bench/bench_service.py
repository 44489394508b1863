#!/usr/bin/env python
"""Benchmark the HTTP service under concurrent load, against baselines measured in the same run.

Starts the real server (gunicorn with modclf.gunicorn_conf) on a free loopback port and measures, each
for --duration seconds with --connections concurrent connections:

  1. GET  /healthz               the trivial JSON endpoint of the same server (HTTP + Flask baseline)
  2. POST /v1/classify           one comment per request (texts rotate through the corpus)
  3. POST /v1/classify/batch     --batch-size comments per request

plus, in this process, the classifier alone (FastPredictor.predict_proba, one comment per call and
in batches) as the no-HTTP baseline. It prints requests/s, p50/p99 latency and the ratios between
them; nothing is asserted (this is a measurement, not a test).

Load generator: wrk when it is installed (`apt-get install wrk`), else a built-in asyncio client
(pure Python, keep-alive HTTP/1.1; it needs CPU of its own, so on a small machine it lowers the
server's numbers: compare ratios, not absolute numbers, across tools).

    python bench/bench_service.py                          # model/, 10 s per scenario
    python bench/bench_service.py --duration 5 --model-dir /tmp/svc-model --tool python
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_service")


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    items_per_request: int = 1

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def items_per_s(self) -> float:
        return self.rps * self.items_per_request


# -- load generators ---------------------------------------------------------------------------------


def run_wrk(url: str, bodies: list[bytes] | None, connections: int, duration: float, threads: int, name: str,
            items: int, workdir: Path) -> Result:
    """wrk with a Lua script that rotates request bodies and prints the numbers we need."""
    script = workdir / ("".join(c if c.isalnum() else "_" for c in name) + ".lua")
    lines = ['local bodies = {']
    for body in bodies or []:
        lines.append("  " + _lua_escape(body.decode("utf-8")) + ",")
    lines.append("}")
    if bodies:
        lines += ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"', "local i = 0",
                  "request = function()", "  i = i % #bodies + 1", "  return wrk.format(nil, nil, nil, bodies[i])", "end"]
    lines += ["done = function(summary, latency, requests)",
              '  io.write(string.format("WRKRESULT %d %d %d %d %d\\n", summary.requests, summary.duration,',
              "    latency:percentile(50), latency:percentile(99),",
              "    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))",
              "end"]
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = ["wrk", f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--timeout", "10s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("WRKRESULT"))
    n, micros, p50, p99, errors = (int(x) for x in line.split()[1:])
    # wrk counts "connection closed by the server after the response" (sync workers) as a read
    # error on some versions; real failures show up as non-2xx (status) or in the server log.
    return Result(name, n, micros / 1e6, p50 / 1000, p99 / 1000, errors, items)


def _lua_escape(s: str) -> str:
    out = ['"']
    for byte in s.encode("utf-8"):
        ch = chr(byte)
        if 32 <= byte < 127 and ch not in '"\\':
            out.append(ch)
        else:
            out.append("\\%03d" % byte)
    out.append('"')
    return "".join(out)


async def _client(host: str, port: int, requests: list[bytes], deadline: float, latencies: list[float],
                  errors: list[int], offset: int) -> None:
    reader = writer = None
    i = offset
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            req = requests[i % len(requests)]
            i += 1
            start = time.perf_counter()
            writer.write(req)
            status_line = await reader.readline()
            length, close = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not status_line.startswith(b"HTTP/1.1 2") and not status_line.startswith(b"HTTP/1.0 2"):
                errors[0] += 1
            if close:
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors[0] += 1
            if writer is not None:
                writer.close()
            reader = writer = None


def _python_load(host: str, port: int, requests: list[bytes], connections: int, duration: float, queue) -> None:
    latencies: list[float] = []
    errors = [0]

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(*(_client(host, port, requests, deadline, latencies, errors, k * 7) for k in range(connections)))
        return time.perf_counter() - start

    seconds = asyncio.run(main())
    queue.put((len(latencies), seconds, _percentile(latencies, 50), _percentile(latencies, 99), errors[0]))


def run_python(url: str, bodies: list[bytes] | None, connections: int, duration: float, name: str, items: int) -> Result:
    """The built-in generator, in its own process so it does not share a GIL with anything."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    path = "/" + path
    if bodies:
        requests = [(f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    else:
        requests = [f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode()]
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=_python_load, args=(host, int(port), requests, connections, duration, queue))
    proc.start()
    n, seconds, p50, p99, errors = queue.get(timeout=duration + 120)
    proc.join()
    return Result(name, n, seconds, p50 * 1000, p99 * 1000, errors, items)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- server and data ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, workers: int, threads: int, max_batch: int, log_path: Path,
                 worker_class: str = "gevent", server: str = "gunicorn") -> subprocess.Popen:
    """gunicorn with modclf.gunicorn_conf (``worker_class`` as MODCLF_WORKER_CLASS), or ``server="waitress"``
    (one process, ``threads`` threads) for comparison."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODCLF_", "_MODCLF_", "PROMETHEUS_"))}
    env.update(MODCLF_BIND=f"127.0.0.1:{port}", MODCLF_MODEL_DIR=str(model_dir), MODCLF_WORKERS=str(workers),
               MODCLF_THREADS=str(threads), MODCLF_MAX_BATCH=str(max_batch), MODCLF_LOG_LEVEL="warning",
               MODCLF_WORKER_CLASS=worker_class)
    if server == "waitress":
        cmd = [sys.executable, "-m", "waitress", "--host", "127.0.0.1", f"--port={port}", f"--threads={threads}",
               "--call", "modclf.serving:create_app"]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:modclf.gunicorn_conf", "modclf.serving:create_app()"]
    with open(log_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: server exited: {log_path.read_text()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("error: server not ready after 120 s")


def load_texts(n: int, seed: int) -> list[str]:
    with open(ROOT / "data" / "comments.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh) if row.get("text", "").strip()]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def in_process(model_dir: Path, texts: list[str], duration: float, batch_size: int) -> tuple[Result, Result]:
    """The classifier without HTTP: FastPredictor one comment per call, and in batches."""
    from modclf.fast import FastPredictor
    from modclf.model import load_artifact

    predictor = FastPredictor.from_artifact(load_artifact(model_dir))
    results = []
    for name, size in (("in-process single", 1), (f"in-process batch {batch_size}", batch_size)):
        latencies = []
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < duration:
            chunk = [texts[(i + k) % len(texts)] for k in range(size)]
            i += size
            t = time.perf_counter()
            predictor.predict_proba(chunk)
            latencies.append(time.perf_counter() - t)
        seconds = time.perf_counter() - start
        results.append(Result(name, len(latencies), seconds, _percentile(latencies, 50) * 1000,
                              _percentile(latencies, 99) * 1000, 0, size))
    return results[0], results[1]


# -- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from modclf.model import DEFAULT_MODEL_DIR

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (default: %(default)s)")
    p.add_argument("--connections", type=int, default=16, help="concurrent connections (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="comments per batch request (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0,
                   help="gunicorn workers (default 0: as the server decides, one per CPU for gevent, 2 x CPUs + 1 otherwise)")
    p.add_argument("--worker-class", choices=["gevent", "sync", "gthread"], default="gevent",
                   help="gunicorn worker class (default: %(default)s, as modclf.gunicorn_conf)")
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker (default: %(default)s)")
    p.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto",
                   help="load generator (default: wrk when installed, else the built-in one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from modclf.model import ModelError, load_artifact
    from modclf.settings import Settings

    args.workers = args.workers or Settings(worker_class=args.worker_class).worker_count

    try:
        version = load_artifact(args.model_dir).version
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if tool == "wrk" and not shutil.which("wrk"):
        print("error: wrk not installed (apt-get install wrk), or use --tool python", file=sys.stderr)
        return 2

    load_before = os.getloadavg()[0]
    texts = load_texts(2000, args.seed)
    singles = [json.dumps({"text": t}).encode() for t in texts[:500]]
    batches = [json.dumps({"comments": [{"id": str(k), "text": texts[(j * args.batch_size + k) % len(texts)]}
                                        for k in range(args.batch_size)]}).encode() for j in range(20)]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        workdir = Path(tmp)
        server = start_server(args.model_dir, port, args.workers, args.threads, max(args.batch_size, 256),
                              workdir / "server.log", worker_class=args.worker_class)
        try:
            def load(path: str, bodies: list[bytes] | None, name: str, items: int = 1) -> Result:
                if tool == "wrk":
                    return run_wrk(base + path, bodies, args.connections, args.duration, os.cpu_count() or 1, name,
                                   items, workdir)
                return run_python(base + path, bodies, args.connections, args.duration, name, items)

            load("/v1/classify", singles[:50], "warm-up")  # first requests pay for lazy imports
            log.info("scenario 1/3: GET /healthz")
            results.append(load("/healthz", None, "GET /healthz"))
            log.info("scenario 2/3: POST /v1/classify")
            results.append(load("/v1/classify", singles, "POST /v1/classify"))
            log.info("scenario 3/3: POST /v1/classify/batch")
            results.append(load("/v1/classify/batch", batches, f"POST /v1/classify/batch ({args.batch_size})",
                                args.batch_size))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            server_log = (workdir / "server.log").read_text()
    log.info("baseline: the classifier in this process, no HTTP")
    single, batch = in_process(args.model_dir, texts, min(args.duration, 5.0), args.batch_size)
    results += [single, batch]

    health, classify, batch_http = results[0], results[1], results[2]
    load_after = os.getloadavg()[0]
    print()
    threads = f" x {args.threads} thread(s)" if args.worker_class == "gthread" else ""
    print(f"model {version}; server: gunicorn, {args.workers} {args.worker_class} worker(s){threads} on "
          f"{os.cpu_count()} CPU(s); load: {tool}, {args.connections} connections, {args.duration:g} s per scenario")
    print(f"1-minute load average before/after: {load_before:.2f}/{load_after:.2f} (other processes skew the numbers)")
    print(f"{'scenario':<34}{'req/s':>10}{'comments/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for r in results:
        items = f"{r.items_per_s:12.0f}" if not r.name.startswith("GET") else f"{'-':>12}"
        print(f"{r.name:<34}{r.rps:10.0f}{items}{r.p50_ms:9.2f}{r.p99_ms:9.2f}{r.errors:8d}")
    ratios = {
        "classify / healthz throughput": classify.rps / health.rps,
        "classify / healthz p50 latency": classify.p50_ms / health.p50_ms,
        "classify / healthz p99 latency": classify.p99_ms / health.p99_ms,
        "batch / single comments per second (HTTP)": batch_http.items_per_s / classify.items_per_s,
        "HTTP single / in-process single comments per second": classify.items_per_s / single.items_per_s,
        "HTTP batch / in-process batch comments per second": batch_http.items_per_s / batch.items_per_s,
    }
    print()
    for name, value in ratios.items():
        print(f"{name:<55}{value:8.2f}x")
    if "Traceback" in server_log or "[ERROR]" in server_log:
        print("\nserver log had errors:\n" + server_log[-2000:], file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model_version": version, "tool": tool, "workers": args.workers,
                                         "worker_class": args.worker_class,
                                         "threads": args.threads, "connections": args.connections,
                                         "duration": args.duration, "loadavg": [load_before, load_after],
                                         "results": [asdict(r) for r in results],
                                         "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
