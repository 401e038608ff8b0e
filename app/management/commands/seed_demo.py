import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from app.demo.seed import DEMO_ADMIN_TOTP_SECRET, DEMO_USERS, demo_totp_uri, seed_demo


class Command(BaseCommand):
    help = "Create the demo users, groups and documents (idempotent) and print the logins."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.ENVIRONMENT == "prod":
            raise CommandError("seed_demo creates known passwords; it never runs in production")
        added = seed_demo()
        self.stdout.write(f"demo ready ({added} documents added)\n")
        port = os.environ.get("PORT", "8000")
        self.stdout.write(f"Demo logins (http://127.0.0.1:{port}/accounts/login/):")
        for spec in DEMO_USERS:
            self.stdout.write(f"  {spec.username:<6} {spec.password:<22} {spec.note}")
        for spec in DEMO_USERS:
            if spec.staff:
                self.stdout.write(
                    f"  {spec.username} has MFA (TOTP): add secret {DEMO_ADMIN_TOTP_SECRET} "
                    "to an authenticator app, or import this URI:\n"
                    f"    {demo_totp_uri(spec.username)}\n"
                    "  (or print a current code: .venv/bin/python manage.py demo_totp_code)"
                )
