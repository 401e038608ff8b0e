"""Reviews: of a file, or of this running deployment (stored for the staff page)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from app.models import User
from design_review.catalogue import Catalogue, default_catalogue
from design_review.live import describe_live
from design_review.model import architecture_from_dict, load_architecture
from design_review.models import LiveReview
from design_review.report import report_to_dict, report_to_markdown
from design_review.review import Report, review_architecture


@dataclass(frozen=True, slots=True)
class ReviewRun:
    report: Report
    description: dict[str, Any]


def review_file(*, path: Path, catalogue: Catalogue | None = None) -> ReviewRun:
    arch = load_architecture(path)
    return ReviewRun(report=review_architecture(arch, catalogue), description=arch.source)


def review_live(*, catalogue: Catalogue | None = None) -> ReviewRun:
    description = describe_live()
    arch = architecture_from_dict(description)
    return ReviewRun(report=review_architecture(arch, catalogue), description=description)


def live_review_store(*, run: ReviewRun, triggered_by: User | None = None) -> LiveReview:
    catalogue = default_catalogue()
    data = report_to_dict(run.report)
    with transaction.atomic():
        return LiveReview.objects.create(
            created_at=timezone.now(),
            triggered_by=triggered_by,
            catalogue_version=catalogue.version,
            highest_severity=run.report.highest_severity(),
            open_findings=len(run.report.open_findings),
            attack_paths=len(run.report.attack_paths),
            report={"review": data, "description": run.description},
            markdown=report_to_markdown(run.report),
        )
