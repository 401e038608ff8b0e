import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from app.identity import Tier
from retrieval.errors import IngestionRejected
from retrieval.models import Document
from retrieval.services import document_create
from retrieval.tasks import index_document


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class Command(BaseCommand):
    help = "Ingest files through the Celery indexing pipeline."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--title", default="")
        parser.add_argument("--classification", required=True)
        parser.add_argument("--allow-users", default="", type=str)
        parser.add_argument("--allow-groups", default="", type=str)
        parser.add_argument("--all-authenticated", action="store_true")
        parser.add_argument("--wait", action="store_true", help="block until indexed")
        parser.add_argument("--timeout", type=float, default=300.0)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tier = Tier.parse(options["classification"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        documents = []
        for path in options["paths"]:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror}") from None
            title = options["title"] or path.stem.replace("-", " ").replace("_", " ").title()
            if options["title"] and len(options["paths"]) > 1:
                title = f"{options['title']} ({path.name})"
            try:
                document = document_create(
                    title=title,
                    classification=tier,
                    source_name=path.name,
                    data=data,
                    allow_users=_csv(options["allow_users"]),
                    allow_groups=_csv(options["allow_groups"]),
                    all_authenticated=options["all_authenticated"],
                )
            except IngestionRejected as exc:
                raise CommandError(str(exc)) from None
            index_document.delay(document.pk)
            documents.append(document)
        if not options["wait"]:
            for document in documents:
                self.stdout.write(f"{document.pk} queued")
            return
        deadline = time.monotonic() + options["timeout"]
        for document in documents:
            while True:
                document.refresh_from_db(fields=["status", "error"])
                if document.status != Document.Status.PENDING:
                    break
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"document {document.pk} not indexed after {options['timeout']}s "
                        "(is a Celery worker running?)"
                    )
                time.sleep(0.2)
            if document.status == Document.Status.FAILED:
                raise CommandError(f"document {document.pk} failed: {document.error}")
            self.stdout.write(str(document.pk))
