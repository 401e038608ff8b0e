"""Production. Refuses to start with settings that would be unsafe.

Every refusal names the setting and the fix; the explicit escape hatches are environment
flags a reviewer can see (`ALLOW_EMBEDDED_DATABASE`, `ALLOW_LOCAL_PROVIDER_ABOVE_INTERNAL`).
"""

from django.core.exceptions import ImproperlyConfigured

from app.identity import Tier
from app.secrets import SecretUnavailable, get_mandatory_secret

from .base import *  # noqa: F403
from .base import ALLOWED_HOSTS, LOCAL_PROVIDER_MAX_TIER, USING_EMBEDDED_DATABASE, env_bool

_WEAK_KEY_MIN_LENGTH = 50
_WEAK_KEY_MIN_UNIQUE = 5


def check_production_settings(
    *,
    debug: bool,
    secret_key: str,
    allowed_hosts: list[str],
    using_embedded_database: bool,
    allow_embedded_database: bool,
    local_provider_max_tier: str,
    allow_local_above_internal: bool,
) -> list[str]:
    """Return the reasons these settings are unsafe for production (empty when safe)."""
    problems = []
    if debug:
        problems.append("DJANGO_DEBUG must be off in production")
    if (
        len(secret_key) < _WEAK_KEY_MIN_LENGTH
        or len(set(secret_key)) < _WEAK_KEY_MIN_UNIQUE
        or secret_key.startswith(("django-insecure", "dev-insecure"))
    ):
        problems.append(
            f"DJANGO_SECRET_KEY is weak: use at least {_WEAK_KEY_MIN_LENGTH} random characters"
        )
    if not allowed_hosts or any(h == "*" or h.startswith("*") for h in allowed_hosts):
        problems.append("DJANGO_ALLOWED_HOSTS must list the served host names (no wildcards)")
    if using_embedded_database and not allow_embedded_database:
        problems.append(
            "DATABASE_URL must name a managed PostgreSQL (the embedded one is dev-only)"
        )
    if Tier.parse(local_provider_max_tier) > Tier.INTERNAL and not allow_local_above_internal:
        problems.append(
            "LOCAL_PROVIDER_MAX_TIER is above 'internal': the offline provider is a demo; set "
            "it to internal or set ALLOW_LOCAL_PROVIDER_ABOVE_INTERNAL=1 deliberately"
        )
    return problems


ENVIRONMENT = "prod"
DEBUG = env_bool("DJANGO_DEBUG", False)
try:
    SECRET_KEY = get_mandatory_secret("DJANGO_SECRET_KEY")
except SecretUnavailable as exc:
    raise ImproperlyConfigured(str(exc)) from None

_problems = check_production_settings(
    debug=DEBUG,
    secret_key=SECRET_KEY,
    allowed_hosts=ALLOWED_HOSTS,
    using_embedded_database=USING_EMBEDDED_DATABASE,
    allow_embedded_database=env_bool("ALLOW_EMBEDDED_DATABASE", False),
    local_provider_max_tier=LOCAL_PROVIDER_MAX_TIER,
    allow_local_above_internal=env_bool("ALLOW_LOCAL_PROVIDER_ABOVE_INTERNAL", False),
)
if _problems:
    raise ImproperlyConfigured("unsafe production settings:\n  - " + "\n  - ".join(_problems))

SERVE_STATIC = False
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_NAME = "__Host-sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken"
