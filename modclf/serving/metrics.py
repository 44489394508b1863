"""Prometheus metrics: request counts and latency per endpoint, predictions per label.

Each app gets its own registry (tests create many apps in one process). Under gunicorn with several
workers, each worker only sees its own requests, so ``/metrics`` would answer with whichever worker
caught the scrape; with ``PROMETHEUS_MULTIPROC_DIR`` set (modclf.gunicorn_conf sets it up by default)
prometheus-client keeps the values in per-process files in that directory and ``/metrics``
aggregates all workers. The variable must be set before prometheus_client is first imported.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Latency buckets in seconds: the service answers in milliseconds, so resolution is put there.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


#: HTTP methods counted under their own name; any other method (clients can invent them) is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServiceMetrics:
    """The service's metric objects and the exposition of them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("modclf_http_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("modclf_http_request_duration_seconds", "Time to answer a request, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("modclf_predictions", "Comments classified, by predicted label and action",
                                   ["label", "action"], registry=r)
        self.reloads = Counter("modclf_model_reloads", "Model/policy reloads by result", ["result"], registry=r)
        self.queue_recorded = Counter("modclf_queue_recorded", "Held comments added to the review queue",
                                      registry=r)
        self.queue_record_failures = Counter("modclf_queue_record_failures",
                                             "Held comments not queued because the store failed (the verdict "
                                             "was still answered)", registry=r)
        self.model_info = Gauge("modclf_model_info", "1 for the model version this process serves",
                                ["version"], registry=r, multiprocess_mode="livemax")

    def observe_request(self, endpoint: str, method: str, status: int, started: float) -> None:
        """Count one request. Label values come from fixed sets, whatever the client sent: the
        endpoint is a route template (or "unmatched"), the method one of :data:`METHODS` or
        "other", the status a number from 100 to 599 (or "other")."""
        method = method if method in METHODS else "other"
        status_label = str(status) if 100 <= status <= 599 else "other"
        self.requests.labels(endpoint, method, status_label).inc()
        self.latency.labels(endpoint).observe(time.perf_counter() - started)

    def count_predictions(self, labels: list[str], actions: list[str]) -> None:
        if len(labels) == 1:
            self.predictions.labels(labels[0], actions[0]).inc()
            return
        counts: dict[tuple[str, str], int] = {}
        for pair in zip(labels, actions):
            counts[pair] = counts.get(pair, 0) + 1
        for (label, action), n in counts.items():
            self.predictions.labels(label, action).inc(n)

    def model_swapped(self, old: str | None, new: str) -> None:
        if old is not None and old != new:
            self.model_info.labels(old).set(0)
        self.model_info.labels(new).set(1)

    def render(self) -> tuple[bytes, str]:
        """The exposition text; aggregated over all worker processes in multiprocess mode."""
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
