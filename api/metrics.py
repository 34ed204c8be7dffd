"""Prometheus metrics: requests and latencies by route, grades, job rows, micro-batch sizes, judge fall-backs,
memory held for graded exemplars.

Each app has its own registry, so two apps in one process (tests) do not clash.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("grader_http_requests_total", "HTTP requests.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("grader_http_request_seconds", "HTTP request latency.", ["method", "route"],
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=self.registry)
        self.grades = Counter("grader_grades_total", "Answers graded.", ["source"], registry=self.registry)
        self.job_rows = Counter("grader_job_rows_total", "Job rows committed.", ["status"], registry=self.registry)
        self.batch_size = Histogram("grader_encode_batch_size", "Answers per grading call of the micro-batcher.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.judge_fallbacks = Counter("grader_judge_fallbacks_total",
                                       "Requests that asked for the judge and were graded without it.",
                                       ["reason"], registry=self.registry)
        self.exemplar_questions = Gauge("grader_exemplar_questions_held",
                                        "Questions whose graded exemplars are held in memory.", registry=self.registry)
        self.exemplar_bytes = Gauge("grader_exemplar_memory_bytes", "Memory held for graded exemplars and what is "
                                    "derived from them (bounded by GRADER_EXEMPLAR_MEMORY_MB).", registry=self.registry)

    def watch_exemplars(self, store) -> None:
        self.exemplar_questions.set_function(lambda: store.held()[0])
        self.exemplar_bytes.set_function(lambda: store.held()[1])

    def job_committed(self, rows: int, errors: int) -> None:
        self.job_rows.labels("ok").inc(rows - errors)
        self.job_rows.labels("error").inc(errors)
        self.grades.labels("job").inc(rows - errors)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (not the raw path, which would explode the labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            self.metrics.latency.labels(scope["method"], name).observe(time.perf_counter() - started)
