"""Optional enterprise single sign-on through allauth's OpenID Connect provider.

Off unless SSO_OIDC_ENABLED. Configured by settings only: the issuer, the client id, and
the client secret as a secret reference (SSO_OIDC_CLIENT_SECRET_REF, resolved through
app/secrets.py when a login starts, never written in settings). When enabled, new
accounts can be created only through SSO (local sign-up stays closed). Group claims map
to Django groups through SSO_OIDC_GROUP_MAP (IdP group -> Django group): unknown IdP
groups are ignored, and mapped Django groups the claim no longer lists are removed;
groups an admin granted by hand (not targets of the map) are left alone. Staff still
pass MFA for admin pages (app/middleware.py: an SSO sign-in is not an MFA step).
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest

from app.secrets import SecretUnavailable, resolve_secret
from audit.models import EventType
from audit.services import audit_record

PROVIDER = "openid_connect"


class SsoConfigurationError(RuntimeError):
    """SSO is enabled but not completely configured."""


class SsoAdapter(DefaultSocialAccountAdapter):
    def list_apps(
        self, request: HttpRequest | None, provider: str | None = None, client_id: str | None = None
    ) -> list[Any]:
        """The one OIDC client from settings (the database's SocialApp table is not
        consulted: SSO is configured by settings and secrets only)."""
        from allauth.socialaccount.models import SocialApp

        if not settings.SSO_OIDC_ENABLED:
            return []
        if provider not in (None, PROVIDER, settings.SSO_OIDC_PROVIDER_ID):
            return []
        if client_id not in (None, settings.SSO_OIDC_CLIENT_ID):
            return []
        missing = [
            name
            for name in ("SSO_OIDC_ISSUER", "SSO_OIDC_CLIENT_ID", "SSO_OIDC_CLIENT_SECRET_REF")
            if not getattr(settings, name)
        ]
        if missing:
            raise SsoConfigurationError(f"SSO is enabled but {', '.join(missing)} is not set")
        try:
            secret = resolve_secret(settings.SSO_OIDC_CLIENT_SECRET_REF)
        except SecretUnavailable as exc:
            raise SsoConfigurationError(f"SSO client secret: {exc}") from None
        return [
            SocialApp(
                provider=PROVIDER,
                provider_id=settings.SSO_OIDC_PROVIDER_ID,
                name=settings.SSO_OIDC_NAME,
                client_id=settings.SSO_OIDC_CLIENT_ID,
                secret=secret,
                settings={
                    "server_url": settings.SSO_OIDC_ISSUER,
                    "oauth_pkce_enabled": True,
                    "token_auth_method": "client_secret_post",
                },
            )
        ]

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        """With SSO on, accounts are created through it (and only through it: the local
        sign-up form stays closed by the account adapter)."""
        return bool(settings.SSO_OIDC_ENABLED)


def _claimed_groups(extra_data: dict[str, Any]) -> list[str] | None:
    """The groups claim from the ID token, else from userinfo; None when absent."""
    claim = settings.SSO_OIDC_GROUPS_CLAIM
    for part in ("id_token", "userinfo"):
        data = extra_data.get(part) or {}
        if isinstance(data, dict) and claim in data:
            value = data[claim]
            if isinstance(value, str):
                return [value]
            if isinstance(value, list):
                return [str(v) for v in value]
            return []
    return None


def sso_groups_sync(*, user: Any, extra_data: dict[str, Any], request_id: str = "") -> None:
    """Make the user's mapped groups equal to what the IdP's groups claim maps to."""
    mapping: dict[str, str] = settings.SSO_OIDC_GROUP_MAP
    claimed = _claimed_groups(extra_data)
    if claimed is None:
        claimed = []  # no claim: the IdP asserts no groups, so no mapped group remains
    wanted = {mapping[g] for g in claimed if g in mapping}
    managed = set(mapping.values())
    with transaction.atomic():
        current = set(user.groups.filter(name__in=managed).values_list("name", flat=True))
        add, remove = sorted(wanted - current), sorted(current - wanted)
        for name in add:
            group, _ = Group.objects.get_or_create(name=name)
            user.groups.add(group)
        if remove:
            user.groups.remove(*Group.objects.filter(name__in=remove))
        if add or remove:
            audit_record(
                event_type=EventType.SSO_GROUPS_SYNCED,
                actor_id=user.pk,
                request_id=request_id,
                subject=f"user:{user.pk}",
                decision="synced",
                reason="sso_login",
                metadata={
                    "added": add,
                    "removed": remove,
                    "ignored": len([g for g in claimed if g not in mapping]),
                },
            )


def connect_signals() -> None:
    """Sync groups on every SSO sign-in (AppConfig.ready)."""
    from allauth.account.signals import user_logged_in

    def on_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        sociallogin = kwargs.get("sociallogin")
        if sociallogin is None or sociallogin.account.provider not in (
            PROVIDER,
            settings.SSO_OIDC_PROVIDER_ID,
        ):
            return
        sso_groups_sync(
            user=user,
            extra_data=dict(sociallogin.account.extra_data or {}),
            request_id=str(getattr(request, "request_id", "")),
        )

    user_logged_in.connect(on_login, dispatch_uid="sso-groups-sync", weak=False)
