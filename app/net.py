"""Who is the client? Forwarded headers are believed only from the configured proxies.

`TRUSTED_PROXIES` lists the addresses (or CIDR networks) of the gateway(s) in front of the
app. A request from anywhere else has its `X-Forwarded-*` headers removed before any code
reads them, so a client cannot choose its own IP address (rate limits, audit) or claim to
have arrived over TLS (`SECURE_PROXY_SSL_HEADER`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_META = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _trusted(address: str, proxies: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(proxies)))


def is_trusted_proxy(address: str) -> bool:
    return _trusted(address, settings.TRUSTED_PROXIES)


def client_ip(request: HttpRequest) -> str:
    """The client's address: the peer, or — when the peer is a trusted proxy — the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = request.META.get("REMOTE_ADDR", "") or ""
    if not is_trusted_proxy(peer):
        return peer
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not is_trusted_proxy(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed hop: fall back to what we know
    return peer


class ForwardedHeadersMiddleware:
    """Drop X-Forwarded-* from requests that did not come through a trusted proxy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        dropped = False
        if not is_trusted_proxy(request.META.get("REMOTE_ADDR", "") or ""):
            for key in FORWARDED_META:
                dropped = request.META.pop(key, None) is not None or dropped
        # Not believed, but not forgotten: a request relayed by an unlisted proxy on this
        # machine must not pass for a local one (audit.metrics.is_loopback_client).
        request.untrusted_forwarding = dropped  # type: ignore[attr-defined]
        request.client_ip = client_ip(request)  # type: ignore[attr-defined]
        return self.get_response(request)
