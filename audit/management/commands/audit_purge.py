from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from audit.retention import PurgeRefused, audit_purge


class Command(BaseCommand):
    help = (
        "Delete the audit rows covered by the newest retention checkpoint older than "
        "RETENTION_AUDIT_DAYS. Privileged: run "
        "as the database owner (DATABASE_ROLE=owner); the application role is refused."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            deleted = audit_purge()
        except PurgeRefused as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(
                "the database refused the purge (run it as the owner role: DATABASE_ROLE=owner)"
            ) from exc
        self.stdout.write(f"purged {deleted} audit events covered by the newest checkpoint")
