"""One Redis client per process, from REDIS_URL (unix socket or TCP)."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


def _normalise(url: str) -> str:
    # Celery/kombu spell unix sockets "redis+socket://PATH"; redis-py spells them "unix://".
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        _normalise(settings.REDIS_URL), socket_timeout=2, socket_connect_timeout=2
    )
