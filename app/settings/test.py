"""The test suite: real PostgreSQL and Redis (embedded unless DATABASE_URL/REDIS_URL)."""

from .base import *  # noqa: F403

ENVIRONMENT = "test"
DEBUG = False
SECRET_KEY = "test-key-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
SERVE_STATIC = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only

# --- model broker ---------------------------------------------------------------------
LOOPBACK_PROVIDER_ENABLED = True
BROKER_USER_REQUESTS_PER_MINUTE = 0  # tests of the limits set their own
BROKER_USER_DAILY_TOKENS = 0
BROKER_RETRY_BASE_S = 0.01
