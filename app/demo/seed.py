"""The demo: users, groups, clearances and a small corpus across tiers and ACLs.

Idempotent: existing users keep their passwords, existing documents are not re-indexed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import Group
from django.db import transaction

from app.identity import Tier
from app.models import User
from retrieval.models import Document
from retrieval.rls import privileged_scope
from retrieval.services import document_create, document_index

CORPUS_DIR = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    groups: tuple[str, ...]
    clearance: Tier
    staff: bool = False
    note: str = ""


# Demo-only credentials for a local, seeded database; prod settings refuse `seed_demo`.
DEMO_USERS = (
    DemoUser(
        "alice",
        "alice-demo-pass-2026",
        ("finance",),
        Tier.CONFIDENTIAL,  # noqa: S106
        note="finance, clearance confidential",
    ),
    DemoUser(
        "bob",
        "bob-demo-pass-2026",
        ("engineering",),
        Tier.INTERNAL,  # noqa: S106
        note="engineering, clearance internal",
    ),
    DemoUser(
        "carol",
        "carol-demo-pass-2026",
        ("hr", "finance"),
        Tier.RESTRICTED,  # noqa: S106
        note="hr + finance, clearance restricted",
    ),
    DemoUser(
        "admin",
        "admin-demo-pass-2026",
        (),
        Tier.RESTRICTED,
        staff=True,  # noqa: S106
        note="staff (Django admin at /admin/), clearance restricted",
    ),
)
DEMO_GROUPS = ("finance", "engineering", "hr")
# The demo admin is MFA-enrolled with this fixed TOTP secret (printed by `seed_demo` so the
# demo can be signed into with any authenticator app). Demo-only, like the passwords.
DEMO_ADMIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPDEMOADMINTOTP234"  # noqa: S105


def _demo_source(file_name: str) -> str:
    return f"demo/{file_name}"


@transaction.atomic
def _seed_accounts() -> None:
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in DEMO_GROUPS}
    for spec in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=spec.username,
            defaults={"email": f"{spec.username}@example.com", "clearance": spec.clearance},
        )
        if created:
            user.set_password(spec.password)
        user.clearance = spec.clearance
        user.is_staff = spec.staff
        user.is_superuser = spec.staff
        user.save()
        user.groups.set([groups[g] for g in spec.groups])
        if spec.staff:
            _enrol_totp(user, DEMO_ADMIN_TOTP_SECRET)


def _enrol_totp(user: User, secret: str) -> None:
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP

    if not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
        TOTP.activate(user, secret)


def demo_totp_uri(username: str, secret: str = DEMO_ADMIN_TOTP_SECRET) -> str:
    """The otpauth:// URI an authenticator app imports (also what a QR code encodes)."""
    from allauth.mfa.adapter import get_adapter

    return get_adapter().build_totp_url(User.objects.get(username=username), secret)


def _seed_documents() -> int:
    manifest = json.loads((CORPUS_DIR / "manifest.json").read_text())
    created = 0
    for entry in manifest:
        source = _demo_source(entry["file"])
        existing = Document.objects.filter(source_name=source).first()
        if existing is not None and existing.status == Document.Status.READY:
            continue
        if existing is None:
            existing = document_create(
                title=entry["title"],
                classification=Tier.parse(entry["classification"]),
                source_name=source,
                data=(CORPUS_DIR / entry["file"]).read_bytes(),
                allow_users=entry.get("allow_users", []),
                allow_groups=entry.get("allow_groups", []),
                all_authenticated=entry.get("all_authenticated", False),
            )
            created += 1
        document_index(document_id=existing.pk)
    return created


def seed_demo() -> int:
    """Create the demo accounts and corpus; return how many documents were added."""
    _seed_accounts()
    with privileged_scope("seed the demo corpus"):
        return _seed_documents()
