"""Local development: `make run`."""

from .base import *  # noqa: F403
from .base import env_bool

ENVIRONMENT = "dev"
DEBUG = env_bool("DJANGO_DEBUG", True)
# A fixed key is acceptable only because dev never leaves the developer's machine;
# prod refuses to start without a strong key of its own.
SECRET_KEY = SECRET_KEY or "dev-insecure-key-do-not-use-in-production-7f3a9c1e5b"  # noqa: F405, S105
SERVE_STATIC = True

# --- conversation encryption ---
CONVERSATION_KEK_ALLOW_DERIVED = True  # a KEK derived from the dev SECRET_KEY
