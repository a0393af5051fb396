"""The server's Prometheus metrics, through prometheus-client (its own registry per server, so
tests can run several): requests by endpoint and code, request time, images per model call,
requests waiting for the model, requests in progress."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch: int):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tfvision_requests",
            "Requests answered, by endpoint and status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "tfvision_request_seconds",
            "Time from a request's arrival to its answer.",
            ["endpoint"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, max_batch})
        self.batch_size = Histogram(
            "tfvision_batch_size",
            "Images per model call (requests merged by the batcher).",
            buckets=[s for s in sizes if s <= max(max_batch, 1)],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tfvision_queue_depth", "Requests waiting for the model.", registry=self.registry
        )
        self.in_progress = Gauge(
            "tfvision_requests_in_progress",
            "Requests received and not yet answered, by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )

    def observe(self, endpoint: str, code: int | str, seconds: float) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        self.seconds.labels(endpoint).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
