from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.verify import verify_chain


class Command(BaseCommand):
    help = "Verify the audit hash chain; exit non-zero on any break."

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain()
        if not report.ok:
            for problem in report.breaks:
                self.stderr.write(problem)
            raise CommandError(
                f"audit chain BROKEN: {len(report.breaks)} problem(s) in {report.checked} events"
            )
        self.stdout.write(
            f"audit chain intact: {report.checked} events verified; head {report.head}"
        )
