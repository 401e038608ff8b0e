"""The test suite: real PostgreSQL and Redis (embedded unless DATABASE_URL/REDIS_URL)."""

from .base import *  # noqa: F403

ENVIRONMENT = "test"
DEBUG = False
SECRET_KEY = "test-key-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
SERVE_STATIC = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
