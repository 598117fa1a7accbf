"""Prometheus metrics of one application instance, served at GET /metrics.

Each application owns a ``CollectorRegistry``, so several applications in one
process (as in the tests) keep separate counts. HTTP requests are labelled by
route template, never by raw path, so unknown paths cannot add label values.
Requests to /metrics are counted in ``wavecls_http_requests_total`` but left
out of the latency histogram and the in-flight gauge: regular scrapes would
otherwise skew the API's latency and count themselves as load.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import Scope

from app.inference import BatchStats, InferenceEngine, Predictions

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# Route label of requests that match no route, such as 404s.
UNMATCHED_ROUTE = "unmatched"
# Method label values; any other method counts as "other", so clients cannot
# add label values by inventing methods.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
QUEUE_WAIT_BUCKETS_S = (0.0001, 0.00025, *LATENCY_BUCKETS_S)
BATCH_SIZE_BUCKETS = tuple(float(2**power) for power in range(13))  # 1 to 4096
BATCH_REQUESTS_BUCKETS = tuple(float(2**power) for power in range(10))  # 1 to 512

router = APIRouter(tags=["metrics"])


class Metrics:
    """The service's metrics, registered in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._engine: InferenceEngine | None = None
        # Counter children per class index, filled when the model is known.
        self._predicted: list[Counter] = []
        self._flagged: list[Counter] = []
        # labels() takes a lock and builds a tuple, so the children are cached.
        # Both caches are bounded: methods, templates and status codes are finite.
        self._request_counters: dict[tuple[str, str, int], Counter] = {}
        self._latency_histograms: dict[tuple[str, str], Histogram] = {}
        self._add_http_metrics()
        self._add_inference_metrics()

    def _add_http_metrics(self) -> None:
        self.requests = Counter(
            "wavecls_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wavecls_http_request_duration_seconds",
            "Time from receiving a request to sending its response, by route "
            "template; /metrics is left out.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "wavecls_http_requests_in_flight",
            "HTTP requests being handled now, /metrics left out.",
            registry=self.registry,
        )

    def _add_inference_metrics(self) -> None:
        self.batch_size = Histogram(
            "wavecls_batch_size_waveforms",
            "Waveforms per forward pass.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "wavecls_batch_requests",
            "Requests coalesced into one forward pass.",
            buckets=BATCH_REQUESTS_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "wavecls_queue_wait_seconds",
            "Time each request's waveforms waited for their forward pass.",
            buckets=QUEUE_WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "wavecls_inference_duration_seconds",
            "Duration of one forward pass.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.predictions = Counter(
            "wavecls_predictions",
            "Classified waveforms by predicted label.",
            ["label"],
            registry=self.registry,
        )
        self.out_of_distribution = Counter(
            "wavecls_out_of_distribution",
            "Classified waveforms flagged out of distribution, by predicted label.",
            ["label"],
            registry=self.registry,
        )
        self.queued = Gauge(
            "wavecls_queued_waveforms",
            "Waveforms waiting for a forward pass now.",
            registry=self.registry,
        )
        self.queued.set_function(self._queued_waveforms)
        self.model = Gauge(
            "wavecls_model_info",
            "Always 1 while a model is loaded; its labels name the model.",
            ["version", "sha256", "device"],
            registry=self.registry,
        )

    def request_counter(self, method: str, route: str, status: int) -> Counter:
        """Return the request counter child of one label set."""
        key = (method, route, status)
        child = self._request_counters.get(key)
        if child is None:
            child = self.requests.labels(method, route, str(status))
            self._request_counters[key] = child
        return child

    def latency_histogram(self, method: str, route: str) -> Histogram:
        """Return the latency histogram child of one label set."""
        key = (method, route)
        child = self._latency_histograms.get(key)
        if child is None:
            child = self.latency.labels(method, route)
            self._latency_histograms[key] = child
        return child

    def observe_request(
        self, method: str, route: str, status: int, duration_s: float, timed: bool
    ) -> None:
        """Count one finished request, and record its latency when ``timed``.

        ``timed`` requests must have been counted in flight when they started.
        """
        method = method if method in KNOWN_METHODS else "other"
        self.request_counter(method, route, status).inc()
        if timed:
            self.in_flight.dec()
            self.latency_histogram(method, route).observe(duration_s)

    def observe_engine(self, engine: InferenceEngine) -> None:
        """Follow the engine's forward passes and publish its model's identity."""
        model = engine.model
        self._engine = engine
        engine.on_batch.append(self.observe_batch)

        self.model.clear()
        self.model.labels(model.version, model.sha256, str(model.device)).set(1)
        # Children created up front export 0, so rate() works from the start.
        self._predicted = [self.predictions.labels(name) for name in model.class_names]
        self._flagged = [
            self.out_of_distribution.labels(name) for name in model.class_names
        ]

    def forget_engine(self) -> None:
        """Stop reading the engine's queue, which has shut down."""
        self._engine = None
        self.model.clear()

    def observe_batch(self, stats: BatchStats) -> None:
        """Record one forward pass; the engine calls this on the event loop."""
        self.batch_size.observe(stats.waveforms)
        self.batch_requests.observe(stats.requests)
        self.inference_duration.observe(stats.inference_s)
        for wait in stats.queue_wait_s:
            self.queue_wait.observe(wait)
        if stats.predictions is not None:
            self._count_predictions(stats.predictions)

    def _count_predictions(self, predictions: Predictions) -> None:
        classes = len(self._predicted)
        labels = predictions.labels
        predicted = np.bincount(labels, minlength=classes)
        flagged = np.bincount(
            labels[predictions.out_of_distribution], minlength=classes
        )
        for index in range(classes):
            if predicted[index]:
                self._predicted[index].inc(int(predicted[index]))
            if flagged[index]:
                self._flagged[index].inc(int(flagged[index]))

    def _queued_waveforms(self) -> float:
        return 0.0 if self._engine is None else float(self._engine.queued_waveforms)


def schema_paths(app: Any) -> frozenset[str]:
    """Return the paths of the app's OpenAPI schema, or none if it cannot be built."""
    openapi = getattr(app, "openapi", None)
    if openapi is None:
        return frozenset()
    try:
        return frozenset(openapi()["paths"])
    except Exception:  # noqa: BLE001 - labels must not stop startup or a request
        logger.warning(
            "cannot build the OpenAPI schema; requests rejected before routing "
            "get the route label %s",
            UNMATCHED_ROUTE,
            exc_info=True,
        )
        return frozenset()


def route_label(scope: Scope, known_paths: frozenset[str]) -> str:
    """Return the template of the route that handled ``scope``, or ``unmatched``.

    A request rejected before routing, such as a 413 on its Content-Length,
    is labelled with its path when that path is one of ``known_paths`` (the
    OpenAPI schema's templates without parameters), so it adds no label
    values either.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    path = scope["path"]
    return path if path in known_paths else UNMATCHED_ROUTE


# An operations endpoint for Prometheus, not part of the API, so it stays out of
# the OpenAPI schema and the interactive docs.
@router.get(METRICS_PATH, response_class=Response, include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Return the metrics in the Prometheus text format, or OpenMetrics if accepted."""
    registry = request.app.state.metrics.registry
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry), media_type=content_type)
