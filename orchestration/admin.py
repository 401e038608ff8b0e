from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from orchestration.anomaly import anomaly_review_clear
from orchestration.models import AnomalyState, DocumentReviewFlag
from orchestration.services import document_flag_review


@admin.register(DocumentReviewFlag)
class DocumentReviewFlagAdmin(admin.ModelAdmin):
    list_display = ("document", "chunk_id", "reason", "status", "created_at", "reviewed_by")
    list_filter = ("status", "reason")
    readonly_fields = (
        "document", "chunk_id", "document_version", "reason", "scores", "created_at",
        "reviewed_by", "reviewed_at",
    )  # fmt: skip
    actions = ["clear_flags", "confirm_flags"]

    @admin.action(description="Clear: the chunk is benign, use it again")
    def clear_flags(self, request: HttpRequest, queryset: QuerySet[DocumentReviewFlag]) -> None:
        for flag in queryset.filter(status=DocumentReviewFlag.Status.OPEN):
            document_flag_review(flag=flag, status="cleared", admin_id=int(request.user.pk or 0))

    @admin.action(description="Confirm: the chunk is malicious, keep it out")
    def confirm_flags(self, request: HttpRequest, queryset: QuerySet[DocumentReviewFlag]) -> None:
        for flag in queryset.filter(status=DocumentReviewFlag.Status.OPEN):
            document_flag_review(flag=flag, status="confirmed", admin_id=int(request.user.pk or 0))


@admin.register(AnomalyState)
class AnomalyStateAdmin(admin.ModelAdmin):
    list_display = ("user", "state", "score", "reason", "changed_at", "reviewed_by")
    list_filter = ("state",)
    readonly_fields = ("user", "state", "score", "reason", "changed_at", "reviewed_by")
    actions = ["review_and_unlock"]

    @admin.action(description="Reviewed: unlock and reset the anomaly score")
    def review_and_unlock(self, request: HttpRequest, queryset: QuerySet[AnomalyState]) -> None:
        for row in queryset:
            anomaly_review_clear(user_id=row.user_id, admin_id=int(request.user.pk or 0))
