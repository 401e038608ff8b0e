import json
from argparse import ArgumentParser
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from audit.selectors import as_json, as_ocsf, events_between


def _when(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"{flag}: expected an ISO 8601 time with a zone, e.g. 2026-11-01T00:00Z")
    return parsed


class Command(BaseCommand):
    help = "Export audit events as JSON lines (one event per line) for a SIEM."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--since", help="ISO 8601, inclusive")
        parser.add_argument("--until", help="ISO 8601, exclusive")
        parser.add_argument("--format", choices=["jsonl", "ocsf"], default="jsonl")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _when(options["since"], "--since")
        until = _when(options["until"], "--until")
        shape = as_ocsf if options["format"] == "ocsf" else as_json
        for event in events_between(since, until).iterator(chunk_size=2000):
            self.stdout.write(json.dumps(shape(event), sort_keys=True, separators=(",", ":")))
