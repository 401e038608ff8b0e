"""Prometheus metrics (prometheus_client), served at /metrics to loopback or staff only.

What is counted, and where:
- HTTP requests and latency per route pattern (`MetricsMiddleware`; the route is the URL
  pattern, never the path, so ids do not multiply the series);
- latency per pipeline step (`step_timer`, around the step loop of `prepare_turn`);
- every audited decision by event type, decision and reason code (`audit_event_observed`,
  called by `audit_record` once the event commits): blocks, flags, redactions, provider
  failovers and unavailability, breaker changes, budget hits, rate limits, logins...;
- from the same events: chat turn latency per provider, breaker state per provider, and
  ingestion throughput (documents and bytes).

Several processes (uvicorn workers, the Celery worker) write the same metrics: when
PROMETHEUS_MULTIPROC_DIR is set (infra.run sets it to var/prometheus for what it starts)
prometheus_client keeps them in files there and /metrics sums them across processes.
Labels only ever carry names and codes from the code, never user input.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "app_http_requests_total", "HTTP requests by route pattern.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "app_http_request_duration_seconds",
    "HTTP request latency by route pattern.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
PIPELINE_STEP_LATENCY = Histogram(
    "app_pipeline_step_duration_seconds",
    "Latency of each chat pipeline step (steps that stop the turn included).",
    ["step"],
    buckets=_LATENCY_BUCKETS,
)
AUDIT_EVENTS = Counter(
    "app_audit_events_total",
    "Audited events by kind, decision and reason code (blocks, failovers, budget hits...).",
    ["event_type", "decision", "reason"],
)
CHAT_TURN_LATENCY = Histogram(
    "app_chat_turn_duration_seconds",
    "End-to-end latency of answered chat turns, by provider.",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)
PROVIDER_BREAKER_OPEN = Gauge(
    "app_provider_breaker_open",
    "1 while a provider's circuit breaker is open (or half-open), 0 when closed.",
    ["provider"],
    multiprocess_mode="mostrecent",
)
INGESTED_DOCUMENTS = Counter("app_ingested_documents_total", "Documents accepted for indexing.")
INGESTED_BYTES = Counter("app_ingested_bytes_total", "Bytes of documents accepted for indexing.")

_BREAKER_CLOSED = {"closed", "close"}


def audit_event_observed(
    *, event_type: str, decision: str, reason: str, metadata: Mapping[str, Any]
) -> None:
    """Count one committed audit event (and what its metadata says about latency, breakers
    and ingestion volume)."""
    AUDIT_EVENTS.labels(event_type, decision or "-", reason or "-").inc()
    if event_type == "chat.turn" and isinstance(metadata.get("latency_ms"), int | float):
        provider = str(metadata.get("provider") or "-")
        CHAT_TURN_LATENCY.labels(provider).observe(float(metadata["latency_ms"]) / 1000)
    elif event_type == "provider.breaker":
        provider = str(metadata.get("provider") or "-")
        state = str(metadata.get("state") or decision)
        PROVIDER_BREAKER_OPEN.labels(provider).set(0 if state in _BREAKER_CLOSED else 1)
    elif event_type == "document.ingested":
        INGESTED_DOCUMENTS.inc()
        if isinstance(metadata.get("bytes"), int):
            INGESTED_BYTES.inc(metadata["bytes"])


@contextmanager
def step_timer(step: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        PIPELINE_STEP_LATENCY.labels(step).observe(time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """The metrics text of every process (multiprocess mode) or of this one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


def is_loopback_client(request: HttpRequest) -> bool:
    """A direct connection from this machine. A request relayed by a proxy (the gateway
    connects from loopback too) carries forwarding headers and does not count."""
    if getattr(request, "untrusted_forwarding", False) or any(
        request.META.get(h) for h in _FORWARDING_HEADERS
    ):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


class MetricsMiddleware:
    """Count and time every request by its URL pattern."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        route = _route_of(request)
        method = request.method if request.method in _METHODS else "other"
        HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _route_of(request: HttpRequest) -> str:
    """The URL pattern that serves (or would serve) the path: requests a middleware answered
    before URL resolution (a 401 for a bad token, say) still count under their route."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return "unmatched"
    return str(match.route) or "unmatched"
