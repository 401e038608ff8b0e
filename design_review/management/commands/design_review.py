"""design_review [--live] [--arch FILE.yaml] [--format md|json|sarif] [--fail-on SEVERITY]

Exit code: 0 when no open finding or attack path reaches the threshold (--fail-on, default
settings.DESIGN_REVIEW_FAIL_ON); otherwise the rank of the highest severity found
(1 low, 2 medium, 3 high, 4 critical). 64: the description or the catalogue is invalid.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from design_review.catalogue import SEVERITIES, CatalogueInvalid, severity_rank
from design_review.model import ArchitectureInvalid
from design_review.report import report_to_dict, report_to_markdown, report_to_sarif
from design_review.services import live_review_store, review_file, review_live

EXIT_INVALID = 64


def exit_code(highest: str, fail_on: str) -> int:
    if fail_on == "never" or severity_rank(highest) < severity_rank(fail_on):
        return 0
    return severity_rank(highest)


class Command(BaseCommand):
    help = "Review a GenAI deployment architecture (a YAML file, or this deployment with --live)."

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--live", action="store_true", help="review this running deployment")
        source.add_argument("--arch", type=Path, metavar="FILE.yaml", help="architecture file")
        parser.add_argument("--format", choices=["md", "json", "sarif"], default="md")
        parser.add_argument(
            "--fail-on",
            choices=[*SEVERITIES[1:], "never"],
            default=None,
            help="lowest severity that makes the exit code non-zero",
        )
        parser.add_argument(
            "--no-store", action="store_true", help="with --live: do not keep it for the staff page"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fail_on = options["fail_on"] or settings.DESIGN_REVIEW_FAIL_ON
        try:
            if options["live"]:
                run = review_live()
                if not options["no_store"]:
                    live_review_store(run=run)
                uri, text = "design_review/live", None
            else:
                path: Path = options["arch"]
                run = review_file(path=path)
                uri, text = path.as_posix(), path.read_text()
        except (ArchitectureInvalid, CatalogueInvalid) as exc:
            raise CommandError(str(exc), returncode=EXIT_INVALID) from None
        fmt = options["format"]
        if fmt == "md":
            self.stdout.write(report_to_markdown(run.report))
        elif fmt == "json":
            self.stdout.write(json.dumps(report_to_dict(run.report), indent=2))
        else:
            sarif = report_to_sarif(run.report, artifact_uri=uri, source_text=text)
            self.stdout.write(json.dumps(sarif, indent=2))
        code = exit_code(run.report.highest_severity(), fail_on)
        if code:
            self.stderr.write(
                f"design review: highest open severity {run.report.highest_severity()} "
                f"(threshold {fail_on})"
            )
            sys.exit(code)
