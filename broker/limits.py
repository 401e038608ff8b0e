"""Shared state in Redis, so that every web worker sees the same picture: the per-provider
circuit breakers, the per-user token budget (per UTC day) and request rate (per minute).

Users are keyed by their keyed hash, never by id or name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

from app.ratelimit import gcra
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


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    transition: Transition | None = None
    # Closed with no failures counted: a success needs no write to the breaker.
    clean: bool = False


def breaker_admit(provider: str) -> Admission:
    """May a call go to this provider now? Closed: yes. Open: no, until the cool-down has
    passed; then exactly one caller wins the half-open probe (the others still see it
    open until the probe's outcome closes or re-opens it)."""
    client = redis_client()
    key = _breaker_key(provider)
    state, opened_at, failures = client.hmget(key, ["state", "opened_at", "failures"])
    if state is None or state == CLOSED.encode():
        return Admission(True, clean=not int(failures or 0))
    cooldown = float(settings.BROKER_BREAKER_COOLDOWN_S)
    if time.time() - float(opened_at or 0) < cooldown:
        return Admission(False)
    # The probe slot expires after a cool-down so a crashed prober cannot wedge it.
    if client.set(f"{key}:probe", "1", nx=True, px=max(1, int(cooldown * 1000))):
        before = state.decode() if isinstance(state, bytes) else str(state)
        client.hset(key, "state", HALF_OPEN)
        if before != HALF_OPEN:
            return Admission(True, Transition(provider, before, HALF_OPEN, int(failures or 0)))
        return Admission(True)
    return Admission(False)


def breaker_success(
    provider: str, *, clean: bool = False, user_hash: str = "", tokens: int = 0
) -> Transition | None:
    """Close the provider's breaker (resetting its failure count; skipped when it was
    `clean` at admission) and charge the user's tokens, in one round trip."""
    key = _breaker_key(provider)
    pipe = redis_client().pipeline(transaction=False)
    window = _window_key(provider)
    if not clean:
        pipe.hget(key, "state")
        pipe.hset(key, mapping={"state": CLOSED, "failures": 0})
        pipe.delete(f"{key}:probe")
    pipe.hincrby(window, "calls", 1)  # the failure ratio's denominator
    pipe.expire(window, 2 * max(1, int(settings.BROKER_BREAKER_WINDOW_S)))
    if user_hash and tokens > 0:
        budget = _budget_key(user_hash, datetime.now(UTC))
        pipe.incrby(budget, tokens)
        pipe.expire(budget, 2 * 86400)
    results = pipe.execute()
    state = None if clean else results[0]
    if state is not None and state != CLOSED.encode():
        redis_client().delete(window)  # a closed breaker starts a fresh failure ratio
        return Transition(provider, state.decode(), CLOSED, 0)
    return None


def _window_key(provider: str) -> str:
    window = max(1, int(settings.BROKER_BREAKER_WINDOW_S))
    return f"{_breaker_key(provider)}:w:{int(time.time() // window)}"


def breaker_failure(provider: str) -> Transition | None:
    """Count a failure; open the breaker at N consecutive failures or when the failure
    ratio over the current window reaches the limit (with enough calls to judge), and
    re-open it when a half-open probe fails."""
    client = redis_client()
    key = _breaker_key(provider)
    window = _window_key(provider)
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, "failures", 1)
    pipe.hget(key, "state")
    pipe.hincrby(window, "calls", 1)
    pipe.hincrby(window, "failures", 1)
    pipe.expire(window, 2 * max(1, int(settings.BROKER_BREAKER_WINDOW_S)))
    failures, state, calls, window_failures, _ = pipe.execute()
    current = state.decode() if isinstance(state, bytes) else CLOSED
    ratio = float(settings.BROKER_BREAKER_FAILURE_RATIO)
    by_ratio = (
        ratio > 0
        and int(calls) >= int(settings.BROKER_BREAKER_MIN_CALLS)
        and int(window_failures) / int(calls) >= ratio
    )
    consecutive = int(failures) == int(settings.BROKER_BREAKER_FAILURES)
    if current == HALF_OPEN or (current == CLOSED and (consecutive or by_ratio)):
        pipe = client.pipeline()
        pipe.hset(key, mapping={"state": OPEN, "opened_at": time.time()})
        pipe.delete(f"{key}:probe", window)
        pipe.execute()
        return Transition(provider, current, OPEN, int(failures))
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


def token_budget_spend(user_hash: str, tokens: int) -> None:
    if tokens <= 0:
        return
    now = datetime.now(UTC)
    key = _budget_key(user_hash, now)
    pipe = redis_client().pipeline()
    pipe.incrby(key, tokens)
    pipe.expire(key, 2 * 86400)
    pipe.execute()


def user_admit(user_hash: str) -> tuple[str, int] | None:
    """Count this request against the user's per-minute rate (GCRA, as the in-app rate
    limits: no minute boundary to burst across) and check their tokens for today. None when
    both are within limits, else ("requests_per_minute" or "tokens_per_day", seconds until
    the user may try again)."""
    rate_limit = int(settings.BROKER_USER_REQUESTS_PER_MINUTE)
    token_limit = int(settings.BROKER_USER_DAILY_TOKENS)
    if rate_limit > 0:
        allowed, wait, _ = gcra(key=f"{_prefix()}:rpm:{user_hash}", count=rate_limit, period_s=60)
        if not allowed:
            return "requests_per_minute", wait
    if token_limit > 0:
        now = datetime.now(UTC)
        used = redis_client().get(_budget_key(user_hash, now))
        if int(used or 0) >= token_limit:
            return "tokens_per_day", _seconds_to_utc_midnight(now)
    return None
