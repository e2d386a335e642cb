"""Prometheus metrics, in a registry owned by the app (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vnode_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vnode_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )
        self.transfers = Counter(
            "vnode_transfers",
            "Internal transfers by outcome code and asset kind",
            ["outcome", "asset"],
            registry=self.registry,
        )
        self.ledger_errors = Counter(
            "vnode_ledger_errors",
            "Unexpected failures (broken invariants, database errors)",
            ["kind"],
            registry=self.registry,
        )

        # Workers (docs/SECURITY.md): one item that raised, and when a whole pass last ended.
        self.worker_item_errors = Counter(
            "vnode_worker_item_errors",
            "Items a background worker failed on (and will retry)",
            ["worker"],
            registry=self.registry,
        )
        self.worker_last_success = Gauge(
            "vnode_worker_last_success_timestamp_seconds",
            "Unix time at which each background worker last completed a whole pass",
            ["worker"],
            registry=self.registry,
        )

        # Where an external payment request's time goes (docs/PERFORMANCE.md): each stage of
        # vnode/payments/send.py, timed once per occurrence (a stage may occur several times
        # per payment: a poll's sleep and check), so sum / count of the request's route is the
        # time per payment and the rest of the request's latency is queueing and the HTTP hop.
        self.payment_stages = Histogram(
            "vnode_payment_stage_seconds",
            "Time an external payment request spends in each stage",
            ["stage"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )

        # GET /virtual_events streams being served by this process (docs/EVENTS.md).
        self.sse_streams = Gauge(
            "vnode_sse_streams",
            "Open Server-Sent Events streams (GET /virtual_events)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
