"""gunicorn configuration for the moderation service (`make serve` runs it).

    gunicorn -c gunicorn.conf.py "modclf.serving:create_app()"

Environment:
    MODCLF_BIND      address to listen on (default 127.0.0.1:8000)
    MODCLF_WORKERS   worker processes (default: 2 x CPUs + 1, gunicorn's recommendation)
    MODCLF_WORKER_CLASS  gevent (default), sync or gthread (see below)
    MODCLF_THREADS   threads per gthread worker (default 4)
    MODCLF_WORKER_CONNECTIONS  connections one gevent/gthread worker holds at once (default 1000)
    MODCLF_TIMEOUT   seconds before a stuck worker is killed and replaced (default 30)
    MODCLF_CONTROL_SOCKET  path of gunicorn's control socket (default: none)
    MODCLF_PIDFILE   write the master's pid here (default: none)
    MODCLF_*         service settings, read by create_app (model dir, policy, limits, API keys)
    PROMETHEUS_MULTIPROC_DIR  where workers keep metric values; a private temporary directory is
                     created (and removed at exit) when unset, so /metrics covers every worker

The model is loaded once in the master before the workers are forked (preload_app), so a bad model
stops the server before it listens, and workers share the model's memory.

Zero-downtime model swap: `kill -HUP <master pid>` (or POST /v1/admin/reload, which does the same)
makes the master reload the model and policy, fork new workers with them, and stop the old workers
gracefully after their in-flight requests. A model that fails to load is logged and the old one
stays in service.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile

# One BLAS/OpenMP thread per worker: workers already use every core, and threads pools do not
# survive fork reliably.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _int_env(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"error: {name} must be an integer, got {raw!r}") from None
    if value < low:
        raise SystemExit(f"error: {name} must be at least {low}, got {value}")
    return value


# Worker class. gevent by default: each worker serves up to MODCLF_WORKER_CONNECTIONS connections
# at once, so clients that send half a request and wait (slowloris) or trickle their body hold a
# greenlet each, not a whole worker. Sync workers (one request per process) were faster at the
# tail on a friendly network but stopped answering when 64 slow clients held every worker;
# gthread workers only defer connections that have sent nothing yet. bench/bench_slow_clients.py
# compares the candidates side by side (README, "Security and robustness").
#   MODCLF_WORKER_CLASS  gevent (default) | sync | gthread
worker_class = os.environ.get("MODCLF_WORKER_CLASS", "gevent").strip() or "gevent"
if worker_class not in ("gevent", "sync", "gthread"):
    raise SystemExit(f"error: MODCLF_WORKER_CLASS must be gevent, sync or gthread, got {worker_class!r}")
if worker_class == "gevent":
    # Patch before the app is preloaded, so every lock, queue and socket it creates (SQLAlchemy's
    # pool, prometheus-client's values) cooperates with the other greenlets of its worker.
    from gevent import monkey

    monkey.patch_all()
    if os.environ.get("MODCLF_MAX_ACCEPT", "1") == "1":
        import gevent.server

        gevent.server.StreamServer.max_accept = 1

bind = [os.environ.get("MODCLF_BIND", "127.0.0.1:8000")]
# A request is ~1 ms of CPU: one process per CPU would leave a CPU idle whenever a worker waits
# on its socket or the feedback store; gunicorn's 2 x CPUs + 1 keeps both busy.
workers = _int_env("MODCLF_WORKERS", 2 * (os.cpu_count() or 1) + 1)
threads = _int_env("MODCLF_THREADS", 4 if worker_class == "gthread" else 1)
worker_connections = _int_env("MODCLF_WORKER_CONNECTIONS", 1000)
preload_app = True
timeout = _int_env("MODCLF_TIMEOUT", 30)
graceful_timeout = 30
keepalive = _int_env("MODCLF_KEEPALIVE", 5, low=0)
# Request line / header limits (gunicorn answers 400 above them, before the app sees anything).
limit_request_line = 8190
limit_request_fields = 100
errorlog = "-"
loglevel = os.environ.get("MODCLF_LOG_LEVEL", "info").lower()
proc_name = "modclf"
pidfile = os.environ.get("MODCLF_PIDFILE") or None  # for `kill -HUP $(cat $MODCLF_PIDFILE)`
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which two
# servers on one machine would fight over: off unless MODCLF_CONTROL_SOCKET names a path.
control_socket_disable = not os.environ.get("MODCLF_CONTROL_SOCKET")
if os.environ.get("MODCLF_CONTROL_SOCKET"):
    control_socket = os.environ["MODCLF_CONTROL_SOCKET"]

# Prometheus multiprocess mode, set up once per server (this file is read again on every HUP).
if not os.environ.get("_MODCLF_METRICS_READY"):
    _metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if _metrics_dir:
        os.makedirs(_metrics_dir, exist_ok=True)
        for _stale in glob.glob(os.path.join(_metrics_dir, "*.db")):  # values of a previous run
            os.remove(_stale)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modclf-metrics-")
        os.environ["_MODCLF_METRICS_OWNED"] = "1"
    os.environ["_MODCLF_METRICS_READY"] = "1"


def _state(server):  # -> modclf.serving.state.ServiceState | None
    """The preloaded app's service state, in the master."""
    if not server.cfg.preload_app:
        return None
    app = server.app.wsgi()
    return getattr(app, "extensions", {}).get("modclf")


def when_ready(server) -> None:
    """Tell the app the master's pid, so POST /v1/admin/reload can ask for a graceful reload."""
    state = _state(server)
    if state is not None:
        state.supervisor_pid = server.pid
        server.log.info("serving model %s with %s %s worker(s)", state.model_version, server.cfg.workers,
                        server.cfg.worker_class_str)


def on_reload(server) -> None:
    """HUP: load the new model and policy in the master before the new workers are forked."""
    state = _state(server)
    if state is None:
        return  # not preloaded: every new worker loads the app (and the model) itself
    previous = state.model_version
    try:
        version, _ = state.reload_all()
    except Exception as exc:  # ModelError/PolicyError, or anything else: keep serving the old model
        server.log.error("reload failed, still serving model %s: %s", previous, exc)
        return
    server.log.info("reloaded: model %s (was %s); starting new workers", version, previous)


def child_exit(server, worker) -> None:
    """Drop the live gauges of a worker that exited (prometheus multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid)
        except Exception:  # never let metrics bookkeeping take the master down
            logging.getLogger("modclf.gunicorn").exception("mark_process_dead failed")


def on_exit(server) -> None:
    if os.environ.get("_MODCLF_METRICS_OWNED"):
        shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
