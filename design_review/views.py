"""The staff-only page: the latest live review, and a button to run a new one."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from design_review.selectors import live_review_latest
from design_review.services import live_review_store, review_live


@staff_member_required
@require_http_methods(["GET", "POST"])
def latest_review(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        live_review_store(run=review_live(), triggered_by=request.user)  # type: ignore[arg-type]
        return HttpResponseRedirect(reverse("design-review"))
    review = live_review_latest()
    return render(
        request,
        "design_review/latest.html",
        {"review": review, "data": review.report["review"] if review else None},
    )
