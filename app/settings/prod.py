"""Production. Refuses to start with settings that would be unsafe.

Every refusal names the setting and the fix; the explicit escape hatches are environment
flags a reviewer can see (`ALLOW_EMBEDDED_DATABASE`, `ALLOW_LOCAL_PROVIDER_ABOVE_INTERNAL`).
"""

from django.core.exceptions import ImproperlyConfigured

from app.secrets import SecretUnavailable, get_mandatory_secret
from app.settings.checks import check_production_settings

from .base import *  # noqa: F403
from .base import (
    ADMIN_MFA_REQUIRED,
    ALLOWED_HOSTS,
    LOCAL_PROVIDER_MAX_TIER,
    USING_EMBEDDED_DATABASE,
    env_bool,
)

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
if not ADMIN_MFA_REQUIRED:
    _problems.append(
        "ADMIN_MFA_REQUIRED must stay on: Django admin needs a session that passed MFA"
    )
if CONVERSATION_KEK_BACKEND == "local" and not CONVERSATION_KEK_LOCAL_REF:  # noqa: F405
    _problems.append(
        "conversation encryption needs a KEK: set CONVERSATION_KEK_LOCAL_REF (a secret"
        " reference to the keyring) or CONVERSATION_KEK_BACKEND=vault"
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

# --- model broker ---------------------------------------------------------------------
# No environment variable can turn the loopback provider on in production.
LOOPBACK_PROVIDER_ENABLED = False
