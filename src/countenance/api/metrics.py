"""Prometheus metrics of one app, in a registry of its own (tests build many apps).

Request counts and latencies by route template, the index size, and ingest counters.

Example::

    metrics = Metrics(index_size=lambda: engine.index.count())
    metrics.ingested(photos=3, faces=4)
    text = metrics.render()
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The app's counters, histograms and gauges."""

    def __init__(self, index_size: Callable[[], int], jobs_running: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "countenance_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "countenance_http_request_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        index = Gauge(
            "countenance_index_faces", "Faces in the vector index.", registry=self.registry
        )
        index.set_function(lambda: float(index_size()))
        running = Gauge(
            "countenance_ingest_jobs_running",
            "Ingest jobs queued or running.",
            registry=self.registry,
        )
        running.set_function(lambda: float(jobs_running()))
        self.ingest_photos = Counter(
            "countenance_ingest_photos", "Photos stored by ingest jobs.", registry=self.registry
        )
        self.ingest_faces = Counter(
            "countenance_ingest_faces", "Faces indexed by ingest jobs.", registry=self.registry
        )
        self.ingest_bad = Counter(
            "countenance_ingest_bad_files", "Files refused by ingest jobs.", registry=self.registry
        )
        self.searches = Counter(
            "countenance_searches", "Searches answered with leads.", registry=self.registry
        )

    def ingested(self, photos: int, faces: int, bad: int = 0) -> None:
        self.ingest_photos.inc(photos)
        self.ingest_faces.inc(faces)
        self.ingest_bad.inc(bad)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (``/v1/sources/{name}``),
    so label values stay few whatever the paths."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)
