"""Request velocity of signed-in users feeds the anomaly score (orchestration/anomaly.py).
Detection, not a control: the rate limits (app/ratelimit.py) refuse; this only scores, so
when Redis is unreachable the request goes on (and the rate limiter decides)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

from app.identity import Principal
from app.logs import get_logger
from orchestration.anomaly import request_velocity_record

log = get_logger("app.velocity")


class RequestVelocityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        principal: Principal | None = getattr(request, "principal", None)
        if (
            principal is not None
            and settings.VELOCITY_REQUESTS_PER_WINDOW > 0
            and not request.path.startswith(settings.STATIC_URL)
        ):
            try:
                request_velocity_record(user_id=principal.user_id, request_id=principal.request_id)
            except RedisError:
                log.warning("velocity_unrecorded", reason="redis_unavailable")
        return self.get_response(request)
