import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from app.identity import Tier
from retrieval.errors import IngestionRejected
from retrieval.models import Document, IngestionJob
from retrieval.services import document_create, document_replace_content, ingestion_submit


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class Command(BaseCommand):
    help = "Ingest files through the Celery indexing pipeline."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--title", default="")
        parser.add_argument("--classification", default=None)
        parser.add_argument(
            "--replace",
            type=int,
            metavar="DOCUMENT_ID",
            help="store PATH as a new version of this document (its tier and ACL stay)",
        )
        parser.add_argument("--allow-users", default="", type=str)
        parser.add_argument("--allow-groups", default="", type=str)
        parser.add_argument("--all-authenticated", action="store_true")
        parser.add_argument("--wait", action="store_true", help="block until indexed")
        parser.add_argument("--timeout", type=float, default=300.0)

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None

    @staticmethod
    def _title(path: Path, options: dict[str, Any]) -> str:
        if not options["title"]:
            return path.stem.replace("-", " ").replace("_", " ").title()
        if len(options["paths"]) > 1:
            return f"{options['title']} ({path.name})"
        return str(options["title"])

    def handle(self, *args: Any, **options: Any) -> None:
        if options["replace"] is not None:
            jobs = self._replace(options)
        else:
            jobs = self._create(options)
        if not options["wait"]:
            for job in jobs:
                self.stdout.write(f"{job.document_id} queued (job {job.pk})")
            return
        self._wait(jobs, options["timeout"])

    def _replace(self, options: dict[str, Any]) -> list[IngestionJob]:
        if len(options["paths"]) != 1:
            raise CommandError("--replace takes exactly one file")
        path = options["paths"][0]
        try:
            with transaction.atomic():
                document, changed = document_replace_content(
                    document_id=options["replace"],
                    source_name=path.name,
                    data=self._read(path),
                    actor_id=None,
                )
                if not changed:
                    self.stdout.write(f"{document.pk} unchanged (version {document.version})")
                    return []
                return [ingestion_submit(document_id=document.pk, actor_id=None)]
        except Document.DoesNotExist:
            raise CommandError(f"no document {options['replace']}") from None
        except IngestionRejected as exc:
            raise CommandError(str(exc)) from None

    def _create(self, options: dict[str, Any]) -> list[IngestionJob]:
        if options["classification"] is None:
            raise CommandError("--classification is required for a new document")
        try:
            tier = Tier.parse(options["classification"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        jobs = []
        # All files or none: one rejected file rolls back the others, and indexing is only
        # queued once every document is committed.
        try:
            with transaction.atomic():
                for path in options["paths"]:
                    document = document_create(
                        title=self._title(path, options),
                        classification=tier,
                        source_name=path.name,
                        data=self._read(path),
                        allow_users=_csv(options["allow_users"]),
                        allow_groups=_csv(options["allow_groups"]),
                        all_authenticated=options["all_authenticated"],
                    )
                    jobs.append(ingestion_submit(document_id=document.pk, actor_id=None))
        except IngestionRejected as exc:
            raise CommandError(str(exc)) from None
        return jobs

    def _wait(self, jobs: list[IngestionJob], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for job in jobs:
            while job.state in {IngestionJob.State.QUEUED, IngestionJob.State.RUNNING}:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"document {job.document_id} not indexed after {timeout}s "
                        "(is a Celery worker running?)"
                    )
                time.sleep(0.2)
                job.refresh_from_db(fields=["state", "error", "progress"])
            if job.state == IngestionJob.State.FAILED:
                raise CommandError(f"document {job.document_id} failed: {job.error}")
            self.stdout.write(str(job.document_id))
