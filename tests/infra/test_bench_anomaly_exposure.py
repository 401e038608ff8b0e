"""The anomaly-exposure model of `make bench-guards`: signals drawn per turn, summed in one
window, against the deployed throttle and lock thresholds."""

from __future__ import annotations

import pytest

from bench import bench_guards


@pytest.fixture
def weights(settings) -> dict[str, float]:
    settings.ANOMALY_THROTTLE_AT = 6
    settings.ANOMALY_LOCK_AT = 12
    return {"blocked": 3.0, "flagged": 1.0, "flagged_weak": 0.25}


def test_an_attacker_blocked_every_turn_is_throttled_at_two_and_locked_at_four(weights):
    result = bench_guards.exposure({"blocked": 50}, weights, draws=200)
    assert result["turns_to_throttle"] == {"median": 2.0, "p95": 2.0}
    assert result["turns_to_lock"] == {"median": 4.0, "p95": 4.0}
    assert result["reached"]["10"] == {"throttled": 1.0, "locked": 1.0}


def test_a_user_never_flagged_is_never_throttled(weights):
    result = bench_guards.exposure({"": 90}, weights, draws=200)
    assert all(r == {"throttled": 0.0, "locked": 0.0} for r in result["reached"].values())
    assert result["turns_to_throttle"]["median"] == 201  # not within 200 turns


def test_weak_flags_expose_a_user_less_than_full_ones(weights):
    counts = {"": 60, "flagged_weak": 30, "flagged": 10}
    deployed = bench_guards.exposure(counts, weights)
    flat = bench_guards.exposure(counts, {**weights, "flagged_weak": 1.0})
    assert deployed["reached"]["20"]["throttled"] < flat["reached"]["20"]["throttled"] / 2
    # Every turn weak-flagged: 24 turns reach the throttle threshold, 20 do not.
    only_weak = bench_guards.exposure({"flagged_weak": 5}, weights, draws=100)
    assert only_weak["reached"]["20"]["throttled"] == 0.0
    assert only_weak["turns_to_throttle"]["median"] == 24
