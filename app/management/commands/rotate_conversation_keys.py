from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from app.conversation_crypto import conversation_keys_rotate
from app.keyring import KeyUnavailable


class Command(BaseCommand):
    help = (
        "Re-wrap every conversation data key under the current key-encryption key version"
        " (content is not re-encrypted). Batched, idempotent, audited (keys.rotated)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch", type=int, default=500, help="conversations per batch")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        try:
            report = conversation_keys_rotate(batch=options["batch"])
        except KeyUnavailable as exc:
            raise CommandError(f"rotation stopped: {exc}") from None
        self.stdout.write(
            f"current KEK {report.kek_id}: rewrapped {report.rewrapped} data keys in"
            f" {report.batches} batches; {report.already_current} already current"
        )
