"""Shared state in Redis, so that every web worker sees the same picture: the per-provider
circuit breakers, the per-user token budget (per UTC day) and request rate (per minute).

Users are keyed by their keyed hash, never by id or name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

from app.redis import redis_client

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def _prefix() -> str:
    return str(getattr(settings, "BROKER_REDIS_PREFIX", "broker"))


# --- circuit breaker ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker changed state (`before` → `after`); the broker audits each one."""

    provider: str
    before: str
    after: str
    failures: int


def _breaker_key(provider: str) -> str:
    return f"{_prefix()}:breaker:{provider}"


def breaker_state(provider: str) -> str:
    state = redis_client().hget(_breaker_key(provider), "state")
    return state.decode() if isinstance(state, bytes) else CLOSED


def breaker_admit(provider: str) -> tuple[bool, Transition | None]:
    """May a call go to this provider now? Closed: yes. Open: no, until the cool-down has
    passed; then exactly one caller wins the half-open probe (the others still see it
    open until the probe's outcome closes or re-opens it)."""
    client = redis_client()
    key = _breaker_key(provider)
    state, opened_at = client.hmget(key, ["state", "opened_at"])
    if state is None or state == CLOSED.encode():
        return True, None
    cooldown = float(settings.BROKER_BREAKER_COOLDOWN_S)
    if time.time() - float(opened_at or 0) < cooldown:  # type: ignore[arg-type]
        return False, None
    # The probe slot expires after a cool-down so a crashed prober cannot wedge it.
    if client.set(f"{key}:probe", "1", nx=True, px=max(1, int(cooldown * 1000))):
        before = state.decode()  # type: ignore[union-attr]
        client.hset(key, "state", HALF_OPEN)
        failures = int(client.hget(key, "failures") or 0)
        if before != HALF_OPEN:
            return True, Transition(provider, before, HALF_OPEN, failures)
        return True, None
    return False, None


def breaker_success(provider: str) -> Transition | None:
    key = _breaker_key(provider)
    pipe = redis_client().pipeline()  # one round trip: read the old state while resetting
    pipe.hget(key, "state")
    pipe.hset(key, mapping={"state": CLOSED, "failures": 0})
    pipe.delete(f"{key}:probe")
    state = pipe.execute()[0]
    if state is not None and state != CLOSED.encode():
        return Transition(provider, state.decode(), CLOSED, 0)
    return None


def breaker_failure(provider: str) -> Transition | None:
    """Count a consecutive failure; open the breaker at the threshold, and re-open it when
    a half-open probe fails."""
    client = redis_client()
    key = _breaker_key(provider)
    failures = int(client.hincrby(key, "failures", 1))
    state = client.hget(key, "state")
    current = state.decode() if isinstance(state, bytes) else CLOSED
    threshold = int(settings.BROKER_BREAKER_FAILURES)
    if current == HALF_OPEN or (current == CLOSED and failures == threshold):
        pipe = client.pipeline()
        pipe.hset(key, mapping={"state": OPEN, "opened_at": time.time()})
        pipe.delete(f"{key}:probe")
        pipe.execute()
        return Transition(provider, current, OPEN, failures)
    return None


def breaker_reset(provider: str) -> None:
    client = redis_client()
    client.delete(_breaker_key(provider), f"{_breaker_key(provider)}:probe")


# --- per-user budgets --------------------------------------------------------------------


def _seconds_to_utc_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((tomorrow - now).total_seconds()) + 1


def _budget_key(user_hash: str, now: datetime) -> str:
    return f"{_prefix()}:tokens:{now:%Y%m%d}:{user_hash}"


def tokens_used_today(user_hash: str) -> int:
    now = datetime.now(UTC)
    return int(redis_client().get(_budget_key(user_hash, now)) or 0)


def token_budget_check(user_hash: str) -> int | None:
    """None when the user may still spend tokens today; else seconds until the reset."""
    limit = int(settings.BROKER_USER_DAILY_TOKENS)
    if limit <= 0:
        return None
    now = datetime.now(UTC)
    used = int(redis_client().get(_budget_key(user_hash, now)) or 0)
    return _seconds_to_utc_midnight(now) if used >= limit else None


def token_budget_spend(user_hash: str, tokens: int) -> None:
    if tokens <= 0:
        return
    now = datetime.now(UTC)
    key = _budget_key(user_hash, now)
    pipe = redis_client().pipeline()
    pipe.incrby(key, tokens)
    pipe.expire(key, 2 * 86400)
    pipe.execute()


def request_rate_check(user_hash: str) -> int | None:
    """Count this request in the current minute; None when allowed, else seconds until the
    next minute begins."""
    limit = int(settings.BROKER_USER_REQUESTS_PER_MINUTE)
    if limit <= 0:
        return None
    now = time.time()
    window = int(now // 60)
    key = f"{_prefix()}:rpm:{window}:{user_hash}"
    pipe = redis_client().pipeline()
    pipe.incr(key)
    pipe.expire(key, 120)
    count = int(pipe.execute()[0])
    return int((window + 1) * 60 - now) + 1 if count > limit else None
