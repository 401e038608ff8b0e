from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Distil the injection guards' static model from the pinned MiniLM weights, unless it "
        "is already there (make run and make test call this; about 25 s the first time)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--always", action="store_true", help="even when GUARD_EMBEDDING is not 'static'"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from broker.embeddings import distil_static_model, load_static_model, static_model_dir

        if settings.GUARD_EMBEDDING != "static" and not options["always"]:
            self.stdout.write("GUARD_EMBEDDING is not 'static': nothing to distil")
            return
        directory = static_model_dir()
        if not directory.is_dir():
            distil_static_model(directory)
            self.stdout.write(f"distilled {directory}")
        load_static_model(directory)  # verifies the digest
        self.stdout.write(f"verified {directory}")
