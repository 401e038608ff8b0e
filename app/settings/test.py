"""The test suite: real PostgreSQL and Redis (embedded unless DATABASE_URL/REDIS_URL)."""

import os

from .base import *  # noqa: F403

ENVIRONMENT = "test"
DEBUG = False
SECRET_KEY = "test-key-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
SERVE_STATIC = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only

# --- gateway, identity and secrets ---
# The suite sends hundreds of requests a minute from 127.0.0.1 as a handful of users: the
# limits stay on, set far above that; tests/app/test_rate_limits.py sets tight ones.
RATE_LIMITS = {name: (count * 1000, window) for name, (count, window) in RATE_LIMITS.items()}  # noqa: F405
# Real Redis cache, in a namespace of this run: allauth's per-login failure counters from
# an earlier run within five minutes must not lock the demo users out of this one.
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": f"test-{os.getpid()}"}}  # noqa: F405

# --- model broker ---------------------------------------------------------------------
LOOPBACK_PROVIDER_ENABLED = True
BROKER_USER_REQUESTS_PER_MINUTE = 0  # tests of the limits set their own
BROKER_USER_DAILY_TOKENS = 0
BROKER_RETRY_BASE_S = 0.01

# --- conversation encryption ---
CONVERSATION_KEK_ALLOW_DERIVED = True  # tests that need a keyring set their own

# --- velocity signals ---
# The suite's users send bursts no person would; tests/orchestration/test_velocity.py sets
# real thresholds.
VELOCITY_REQUESTS_PER_WINDOW = 0
VELOCITY_DOCUMENTS_PER_WINDOW = 0
VELOCITY_FAILED_LOGINS_PER_WINDOW = 0
