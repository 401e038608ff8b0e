from typing import Any

from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from app.demo.seed import DEMO_ADMIN_TOTP_SECRET


class Command(BaseCommand):
    help = "Print the demo admin's current TOTP code (demo only; never in production)."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.ENVIRONMENT == "prod":
            raise CommandError("demo_totp_code is a demo helper; it never runs in production")
        import time

        from allauth.mfa import app_settings

        counter = int(time.time()) // app_settings.TOTP_PERIOD
        self.stdout.write(format_hotp_value(hotp_value(DEMO_ADMIN_TOTP_SECRET, counter)))
