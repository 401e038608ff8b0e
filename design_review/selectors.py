from __future__ import annotations

from design_review.models import LiveReview


def live_review_latest() -> LiveReview | None:
    return LiveReview.objects.order_by("-created_at", "-id").first()
