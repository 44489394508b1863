"""gunicorn configuration of the moderation service, read from the modclf settings.

    modclf serve                       # what `make serve` runs
    gunicorn -c python:modclf.gunicorn_conf "modclf.serving:create_app()"   # the same, by hand

It lives outside modclf.serving on purpose: importing that package loads prometheus-client, which
must only happen after PROMETHEUS_MULTIPROC_DIR is set (below).

Every value comes from :func:`modclf.settings.load_settings` (``MODCLF_BIND``, ``MODCLF_WORKERS``,
``MODCLF_WORKER_CLASS``, ``MODCLF_TIMEOUT``, ``MODCLF_KEEPALIVE``, ``MODCLF_WORKER_CONNECTIONS``,
``MODCLF_THREADS``, ``MODCLF_PIDFILE``, ``MODCLF_CONTROL_SOCKET``, ``MODCLF_LOG_LEVEL``, or the
settings file). ``PROMETHEUS_MULTIPROC_DIR``: where workers keep metric values; a private temporary
directory is created (and removed at exit) when unset, so /metrics covers every worker.

Worker class: gevent by default. Each worker then serves up to ``worker_connections`` connections
at once, so clients that send half a request and wait (slowloris) or trickle their body hold a
greenlet each, not a whole worker, and the body guard (modclf.serving.body) gives up on a body
that has not arrived within ``body_timeout`` seconds; a connection that has not sent its whole
request head within ``header_timeout`` seconds is answered 408 and closed
(:mod:`modclf.gunicorn_worker`). Sync workers (one request per process) have
the shortest tail on a friendly network but stop answering when slow clients hold every worker;
gthread workers only defer connections that have sent nothing yet. bench/bench_slow_clients.py
compares them side by side (README, "Security and robustness"). Keep-alive is off by default
(``MODCLF_KEEPALIVE=0``): each request comes in on a new connection and waits in the one accept
queue that every worker serves, so a worker that is busy or descheduled never holds other clients'
requests (a kept-alive connection stays with one worker: p99 x10 under load, bench_service.py). On the open internet a buffering
proxy (nginx) in front is still good practice; the service does not depend on one.

The model is loaded once in the master before the workers are forked (preload_app), so a bad model
stops the server before it listens, and workers share the model's memory. The master then moves
everything it has loaded into the garbage collector's permanent generation (``gc.freeze``) before
each fork: otherwise every full collection in a worker walks the ~240,000 objects of the libraries
and the model, writing to each one's header, which copies the shared pages into the worker and
stalled all of its requests for 0.1-1.9 s at a time (the largest part of the p99 latency under load).

Zero-downtime model swap: ``kill -HUP <master pid>`` (or POST /v1/admin/reload, which does the
same) makes the master reload the model and policy, fork new workers with them, and stop the old
workers gracefully after their in-flight requests. A model that fails to load is logged and the
old one stays in service.
"""

from __future__ import annotations

import gc
import glob
import logging
import os
import shutil
import tempfile

# One BLAS/OpenMP thread per worker: workers already use every core, and thread pools do not
# survive fork reliably.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from modclf.settings import load_settings  # noqa: E402  (light: no model, no web framework)

_settings = load_settings()

worker_class = _settings.worker_class
if worker_class == "gevent":
    # gevent's worker with a deadline on the request head (MODCLF_HEADER_TIMEOUT): modclf.gunicorn_worker
    worker_class = "modclf.gunicorn_worker.ModclfGeventWorker"
    # Patch before the app is preloaded, so every lock, queue and socket it creates (SQLAlchemy's
    # pool, prometheus-client's values) cooperates with the other greenlets of its worker.
    from gevent import monkey

    monkey.patch_all()
    import gevent.server

    # Accept one connection per turn of a worker's loop: a worker busy classifying leaves new
    # connections to idle workers instead of queueing a burst of them behind its own.
    gevent.server.StreamServer.max_accept = 1

bind = [_settings.bind]
# One gevent worker per CPU (its greenlets wait on sockets and the feedback store without holding
# the CPU); 2 x CPUs + 1 for the blocking sync/gthread workers (gunicorn's advice). See
# Settings.worker_count for the measurement.
workers = _settings.worker_count
threads = _settings.threads if worker_class == "gthread" else 1
worker_connections = _settings.worker_connections
preload_app = True
timeout = _settings.timeout
graceful_timeout = 30
keepalive = _settings.keepalive
# Request line / header limits (gunicorn answers 400 above them, before the app sees anything).
limit_request_line = 8190
limit_request_fields = 100
errorlog = "-"
loglevel = _settings.log_level
proc_name = "modclf"
pidfile = _settings.pidfile or None  # for `kill -HUP $(cat $MODCLF_PIDFILE)`
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which two
# servers on one machine would fight over: off unless MODCLF_CONTROL_SOCKET names a path.
control_socket_disable = not _settings.control_socket
if _settings.control_socket:
    control_socket = _settings.control_socket

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
    gc.collect()  # garbage of the start-up, not worth freezing (see pre_fork)
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
    gc.unfreeze()  # the old model was frozen with the rest: let the collector free its cycles
    gc.collect()
    server.log.info("reloaded: model %s (was %s); starting new workers", version, previous)


def pre_fork(server, worker) -> None:
    """Freeze the master's objects (the preloaded app and model) out of the workers' collections."""
    gc.freeze()


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
