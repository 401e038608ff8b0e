"""Runtime anomaly detection: a per-user rolling score in Redis.

Signals (blocked or flagged turns, every turn for rate, unusually broad retrieval) are
added to a sorted set per user, scored by time; the score is the weighted sum of the
signals inside the window, turns counting only beyond ANOMALY_RATE_ALLOWANCE. Above
ANOMALY_THROTTLE_AT the user is throttled (a few turns a minute), above ANOMALY_LOCK_AT
the account is locked for chat until an admin reviews it. Each transition is stored on
`AnomalyState` and audited in one transaction.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from app.identity import Principal
from app.ratelimit import gcra
from app.redis import redis_client
from audit.models import EventType
from audit.services import audit_record
from orchestration.models import AnomalyState

State = AnomalyState.State


def _key(user_id: int) -> str:
    return f"anomaly:signals:{user_id}"


def state_of(user_id: int) -> str:
    state = AnomalyState.objects.filter(user_id=user_id).values_list("state", flat=True).first()
    return state or State.NORMAL


def rolling_score(user_id: int, *, now: float | None = None) -> float:
    now = time.time() if now is None else now
    client = redis_client()
    key = _key(user_id)
    client.zremrangebyscore(key, 0, now - settings.ANOMALY_WINDOW_S)
    weights = settings.ANOMALY_WEIGHTS
    total, turns = 0.0, 0
    for member in client.zrange(key, 0, -1):
        name = member.decode() if isinstance(member, bytes) else str(member)
        kind = name.split(":", 1)[0]
        if kind == "turn":
            turns += 1
        else:
            total += float(weights.get(kind, 0.0))
    # Rate: only turns beyond the normal allowance for the window count.
    excess = max(0, turns - settings.ANOMALY_RATE_ALLOWANCE)
    return total + excess * float(weights.get("turn", 0.0))


def _target(score: float, current: str) -> str:
    if current == State.LOCKED:
        return State.LOCKED  # only an admin unlocks
    if score >= settings.ANOMALY_LOCK_AT:
        return State.LOCKED
    if score >= settings.ANOMALY_THROTTLE_AT:
        return State.THROTTLED
    return State.NORMAL


def anomaly_signal(*, principal: Principal, kind: str, now: float | None = None) -> str:
    """Record one signal for the principal's user and apply any state transition.
    Returns the user's state after it."""
    return anomaly_signal_for(
        user_id=principal.user_id, kind=kind, request_id=principal.request_id, now=now
    )


def anomaly_signal_for(
    *, user_id: int, kind: str, request_id: str = "", now: float | None = None
) -> str:
    """`anomaly_signal` for a user known only by id (a failed login has no principal)."""
    if kind not in settings.ANOMALY_WEIGHTS:
        raise ValueError(f"unknown anomaly signal {kind!r}")
    now = time.time() if now is None else now
    client = redis_client()
    key = _key(user_id)
    client.zadd(key, {f"{kind}:{uuid.uuid4().hex}": now})
    client.expire(key, settings.ANOMALY_WINDOW_S * 2)
    score = rolling_score(user_id, now=now)
    current = state_of(user_id)
    target = _target(score, current)
    if target != current:
        anomaly_transition(
            user_id=user_id,
            state=target,
            score=score,
            reason=f"signal:{kind}",
            actor_id=None,
            request_id=request_id,
        )
    return target


def anomaly_transition(
    *,
    user_id: int,
    state: str,
    score: float,
    reason: str,
    actor_id: int | None,
    request_id: str = "",
) -> None:
    """Move a user to `state`, audited in the same transaction."""
    with transaction.atomic():
        row, _ = AnomalyState.objects.select_for_update().get_or_create(user_id=user_id)
        previous = row.state
        row.state = state
        row.score = score
        row.reason = reason[:64]
        row.changed_at = timezone.now()
        row.reviewed_by_id = actor_id
        row.save()
        audit_record(
            event_type=EventType.ANOMALY_CHANGED,
            actor_id=actor_id if actor_id is not None else user_id,
            request_id=request_id,
            subject=f"user:{user_id}",
            decision=state,
            reason=reason[:64],
            metadata={"from": previous, "to": state, "score": round(score, 2), "user": user_id},
        )


def anomaly_review_clear(*, user_id: int, admin_id: int) -> None:
    """An admin reviewed the account: back to normal, rolling signals forgotten."""
    redis_client().delete(_key(user_id))
    anomaly_transition(
        user_id=user_id, state=State.NORMAL, score=0.0, reason="admin_review", actor_id=admin_id
    )


def throttle_allows(user_id: int, *, now: float | None = None) -> bool:
    """For a throttled user: at most ANOMALY_THROTTLED_TURNS_PER_MIN turns per minute (GCRA,
    as the rate limits: no minute boundary to burst across)."""
    allowed, _, _ = gcra(
        key=f"anomaly:throttle:{user_id}",
        count=int(settings.ANOMALY_THROTTLED_TURNS_PER_MIN),
        period_s=60,
        now=now,
    )
    return allowed


def retrieval_breadth_record(*, principal: Principal, document_ids: list[int]) -> str | None:
    """Track the distinct documents a user's turns retrieved within the window; each time
    the count passes another multiple of ANOMALY_BROAD_RETRIEVAL_DOCS, that is a signal."""
    if not document_ids:
        return None
    documents_velocity_record(
        user_id=principal.user_id, request_id=principal.request_id, document_ids=document_ids
    )
    client = redis_client()
    key = f"anomaly:docs:{principal.user_id}"
    before = int(client.scard(key))
    client.sadd(key, *document_ids)
    if before == 0:
        client.expire(key, settings.ANOMALY_WINDOW_S)
    after = int(client.scard(key))
    step = settings.ANOMALY_BROAD_RETRIEVAL_DOCS
    if after // step > before // step:
        return anomaly_signal(principal=principal, kind="broad_retrieval")
    return None


# --- velocity: short-window bursts -----------------------------------------------------------
# Each counter lives in a fixed window bucket; a signal is recorded each time a count
# reaches another multiple of its threshold, so a burst adds weight in proportion to its
# size and normal use adds nothing. Thresholds and windows: VELOCITY_* settings; weights:
# ANOMALY_WEIGHTS["velocity_requests" | "velocity_documents" | "failed_logins"].


def _bucket(window_s: int, now: float | None) -> int:
    return int((time.time() if now is None else now) // window_s)


def _count_in_window(
    *, user_id: int, counter: str, kind: str, window: int, threshold: int,
    request_id: str, now: float | None,
) -> str | None:  # fmt: skip
    """Count one event in the user's current window; a `kind` signal per `threshold`."""
    key = f"anomaly:velocity:{counter}:{user_id}:{_bucket(window, now)}"
    pipe = redis_client().pipeline()
    pipe.incr(key)
    pipe.expire(key, window * 2)
    count = int(pipe.execute()[0])
    if threshold > 0 and count % threshold == 0:
        return anomaly_signal_for(user_id=user_id, kind=kind, request_id=request_id, now=now)
    return None


def request_velocity_record(
    *, user_id: int, request_id: str = "", now: float | None = None
) -> str | None:
    """Count one authenticated request; a signal per VELOCITY_REQUESTS_PER_WINDOW."""
    return _count_in_window(
        user_id=user_id,
        counter="requests",
        kind="velocity_requests",
        window=settings.VELOCITY_REQUESTS_WINDOW_S,
        threshold=settings.VELOCITY_REQUESTS_PER_WINDOW,
        request_id=request_id,
        now=now,
    )


def documents_velocity_record(
    *, user_id: int, document_ids: list[int], request_id: str = "", now: float | None = None
) -> str | None:
    """Distinct documents touched (searched, viewed, retrieved) in a short window; a signal
    each time the count passes another multiple of VELOCITY_DOCUMENTS_PER_WINDOW."""
    if not document_ids:
        return None
    window = settings.VELOCITY_DOCUMENTS_WINDOW_S
    threshold = settings.VELOCITY_DOCUMENTS_PER_WINDOW
    key = f"anomaly:velocity:documents:{user_id}:{_bucket(window, now)}"
    pipe = redis_client().pipeline()
    pipe.scard(key)
    pipe.sadd(key, *document_ids)
    pipe.expire(key, window * 2)
    pipe.scard(key)
    before, _, _, after = pipe.execute()
    if threshold > 0 and int(after) // threshold > int(before) // threshold:
        return anomaly_signal_for(
            user_id=user_id, kind="velocity_documents", request_id=request_id, now=now
        )
    return None


def failed_login_velocity_record(
    *, user_id: int, request_id: str = "", now: float | None = None
) -> str | None:
    """A failed sign-in (password or MFA code) against this account; a signal per
    VELOCITY_FAILED_LOGINS_PER_WINDOW in the window. allauth's login throttle (5 failures
    per login name per 5 minutes) caps this at about three signals per anomaly window:
    strangers guessing a password can get the account's chat throttled for a while, not
    locked."""
    return _count_in_window(
        user_id=user_id,
        counter="failed-logins",
        kind="failed_logins",
        window=settings.VELOCITY_FAILED_LOGINS_WINDOW_S,
        threshold=settings.VELOCITY_FAILED_LOGINS_PER_WINDOW,
        request_id=request_id,
        now=now,
    )
