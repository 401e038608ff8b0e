"""In-app rate limits in Redis: per client IP, per user, and per route, with Retry-After.

Defence in depth behind the gateway's `limit_req`: the app still protects itself when it is
reached without nginx, and it knows the *user*, which nginx does not. Each limit is a GCRA
(generic cell rate algorithm, the leaky bucket nginx's `limit_req` also uses): `n` requests
per `s` seconds allows a burst of `n`, then one request every `s/n` seconds. Unlike fixed
windows it has no boundary at which the count resets, so `n` per `s` is never `2n` across
a boundary, and Retry-After is exact. One Lua script per limit keeps it to one round trip
and atomic across web workers; refused requests do not use up capacity. The first refusal
per offender and period is audited as `rate.limited` (so a flood cannot flood the audit
chain). If Redis is unreachable the limits fail open and
say so in the log: availability of the app is not made to depend on the limiter, and the
gateway's limits still apply.

`RATE_LIMITS` maps a limit name to `(requests, window_seconds)`: `ip` and `user` cover every
request; `route:<name>` covers unsafe requests to the paths of `RATE_LIMIT_ROUTES[<name>]`,
counted per user when signed in and per IP otherwise."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError

from app.errors import error_body
from app.logs import get_logger
from app.redis import redis_client
from audit.models import EventType
from audit.services import audit_record

log = get_logger("app.ratelimit")
Handler = Callable[[HttpRequest], HttpResponse]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: str
    retry_after_s: int
    first_refusal: bool


# KEYS[1] holds the theoretical arrival time (TAT) in ms; KEYS[2] marks an audited refusal.
# ARGV: now_ms, emission interval ms (period / n), period ms. Returns {allowed, retry_ms,
# first_refusal}.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now <= period then
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
  return {1, 0, 0}
end
local first = redis.call('SET', KEYS[2], '1', 'NX', 'PX', period) and 1 or 0
return {0, math.ceil(new_tat - period - now), first}
"""


def gcra(
    *, key: str, count: int, period_s: float, now: float | None = None
) -> tuple[bool, int, bool]:
    """Admit one event under `key` at `count` per `period_s` (atomic across workers).
    Returns (allowed, seconds until one would be, first refusal in this period).
    Raises RedisError when Redis is unreachable: the caller decides to fail open or closed."""
    now_ms = (time.time() if now is None else now) * 1000.0
    period_ms = period_s * 1000.0
    allowed, retry_ms, first = redis_client().eval(
        _GCRA,
        2,
        key,
        f"{key}:audited",
        repr(now_ms),
        repr(period_ms / max(1, count)),
        repr(period_ms),
    )
    if allowed:
        return True, 0, False
    return False, max(1, math.ceil(int(retry_ms) / 1000)), bool(first)


def rate_check(*, limit: str, who: str, now: float | None = None) -> Verdict:
    """Count one request by `who` against `limit`; say whether it may proceed."""
    spec = settings.RATE_LIMITS.get(limit)
    if spec is None:
        return Verdict(True, limit, 0, False)
    try:
        allowed, retry_s, first = gcra(
            key=f"rl:{limit}:{who}", count=int(spec[0]), period_s=int(spec[1]), now=now
        )
    except RedisError:
        log.warning("rate_limit_unavailable", limit=limit)
        return Verdict(True, limit, 0, False)
    return Verdict(allowed, limit, retry_s, first)


def route_of(path: str) -> str | None:
    for name, prefixes in settings.RATE_LIMIT_ROUTES.items():
        if any(path.startswith(p) for p in prefixes):
            return str(name)
    return None


def rate_limited_record(
    *, request: HttpRequest, verdict: Verdict, user_id: int | None, who_kind: str
) -> None:
    audit_record(
        event_type=EventType.RATE_LIMITED,
        actor_id=user_id,
        request_id=str(getattr(request, "request_id", "")),
        subject=f"user:{user_id}" if user_id else "",
        decision="refused",
        reason=verdict.limit,
        metadata={
            "per": who_kind,
            "path": request.path[:200],
            "retry_after_s": verdict.retry_after_s,
            "limit": list(settings.RATE_LIMITS[verdict.limit]),
        },
    )


def too_many_requests(request: HttpRequest, verdict: Verdict) -> HttpResponse:
    detail = "Too many requests. Please wait before trying again."
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body(request, "rate_limited", detail), status=429)
    else:
        response = HttpResponse(detail, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(verdict.retry_after_s)
    return response


def _enforce(
    request: HttpRequest, checks: list[tuple[str, str, str]], user_id: int | None
) -> HttpResponse | None:
    for limit, who, who_kind in checks:
        verdict = rate_check(limit=limit, who=who)
        if not verdict.allowed:
            if verdict.first_refusal:
                rate_limited_record(
                    request=request, verdict=verdict, user_id=user_id, who_kind=who_kind
                )
            return too_many_requests(request, verdict)
    return None


def _ip(request: HttpRequest) -> str:
    return str(getattr(request, "client_ip", "") or request.META.get("REMOTE_ADDR", ""))


class IpRateLimitMiddleware:
    """Before authentication: every request per client IP, and anonymous unsafe requests
    to limited routes (the login form) per IP. Cheap enough to run before any DB work."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ip = _ip(request)
        checks = [("ip", ip, "ip")]
        route = route_of(request.path)
        if route is not None and request.method not in SAFE_METHODS:
            checks.append((f"route:{route}:ip", ip, "ip"))
        refusal = _enforce(request, checks, None)
        return refusal or self.get_response(request)


class UserRateLimitMiddleware:
    """After authentication: every request per user, and unsafe requests to limited routes
    (chat, token issue) per user, whatever IP or credential they come from."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        principal = getattr(request, "principal", None)
        if principal is None:
            return self.get_response(request)
        who = str(principal.user_id)
        checks = [("user", who, "user")]
        route = route_of(request.path)
        if route is not None and request.method not in SAFE_METHODS:
            checks.append((f"route:{route}", who, "user"))
        refusal = _enforce(request, checks, principal.user_id)
        return refusal or self.get_response(request)
