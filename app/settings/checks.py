"""Production-safety checks, importable on their own (prod.py runs them on import)."""

from __future__ import annotations

from app.identity import Tier

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
    # "*" and ".example.com" (any subdomain) are both wildcards to Django.
    if not allowed_hosts or any(h.startswith(("*", ".")) for h in allowed_hosts):
        problems.append("DJANGO_ALLOWED_HOSTS must list the served host names (no wildcards)")
    if using_embedded_database and not allow_embedded_database:
        problems.append(
            "DATABASE_URL must name a managed PostgreSQL (the embedded one is dev-only)"
        )
    try:
        local_tier = Tier.parse(local_provider_max_tier)
    except ValueError as exc:
        problems.append(f"LOCAL_PROVIDER_MAX_TIER: {exc}")
    else:
        if local_tier > Tier.INTERNAL and not allow_local_above_internal:
            problems.append(
                "LOCAL_PROVIDER_MAX_TIER is above 'internal': the offline provider is a demo; "
                "set it to internal or set ALLOW_LOCAL_PROVIDER_ABOVE_INTERNAL=1 deliberately"
            )
    return problems
