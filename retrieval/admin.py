from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from app.identity import Tier
from retrieval.errors import IngestionRejected
from retrieval.models import Document, IngestionJob, PendingUpload
from retrieval.services import acl_change_record, acl_snapshot, document_delete, ingestion_retry


class IngestionJobInline(admin.TabularInline):
    model = IngestionJob
    extra = 0
    can_delete = False
    fields = ("state", "progress_bar", "error", "attempts", "created_at")
    readonly_fields = fields

    @admin.display(description="progress")
    def progress_bar(self, job: IngestionJob) -> str:
        return progress_bar(job)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def progress_bar(job: IngestionJob) -> str:
    return format_html(
        '<progress max="100" value="{}" title="{}%"></progress> {}%', job.progress, job.progress,
        job.progress,
    )  # fmt: skip


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "classification",
        "pii_suggestion",
        "all_authenticated",
        "status",
        "version",
        "updated_at",
    )
    list_filter = ("classification", "status", "all_authenticated")
    search_fields = ("title", "source_name")
    filter_horizontal = ("allowed_users", "allowed_groups")
    readonly_fields = (
        "source_name",
        "content_sha256",
        "version",
        "status",
        "error",
        "pii_kinds",
        "suggested_classification",
        "waiting_upload",
        "text",
    )
    inlines = [IngestionJobInline]

    @admin.display(description="file waiting for indexing")
    def waiting_upload(self, document: Document) -> str:
        upload = (
            PendingUpload.objects.filter(document=document)
            .values("source_name", "sha256", "created_at")
            .first()
        )
        if upload is None:
            return "-"
        return (
            f"{upload['source_name']} (sha256 {upload['sha256'][:12]}…, uploaded "
            f"{upload['created_at']:%Y-%m-%d %H:%M} UTC); the version above serves until "
            "it is indexed"
        )

    @admin.display(description="PII scan")
    def pii_suggestion(self, document: Document) -> str:
        if document.suggested_classification is None:
            return "-"
        suggested = Tier(document.suggested_classification).label
        if document.tier_below_suggestion:
            return format_html("<strong>raise to {}?</strong>", suggested)
        return suggested

    # Tier and ACL edits are audited with old and new values, in the request's transaction
    # (AdminDataScopeMiddleware): snapshot before the save, record after the M2M save.
    def save_model(self, request: HttpRequest, obj: Document, form: Any, change: bool) -> None:
        # Kept on the request: the ModelAdmin instance is shared by concurrent requests.
        request._document_acl_before = acl_snapshot(obj.pk) if change else None  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        before = getattr(request, "_document_acl_before", None)
        if before is not None:
            acl_change_record(
                document_id=form.instance.pk,
                old=before,
                actor_id=request.user.pk,
                request_id=getattr(request, "request_id", ""),
            )

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        document_delete(
            document=obj, actor_id=request.user.pk, request_id=getattr(request, "request_id", "")
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            self.delete_model(request, document)


@admin.register(IngestionJob)
class IngestionJobAdmin(admin.ModelAdmin):
    list_display = ("id", "document", "state", "progress_display", "attempts", "updated_at")
    list_filter = ("state",)
    readonly_fields = ("document", "state", "progress", "error", "attempts", "created_by_id")
    actions = ["retry"]

    @admin.display(description="progress")
    def progress_display(self, job: IngestionJob) -> str:
        return progress_bar(job)

    @admin.action(description="Retry the selected failed jobs")
    def retry(self, request: HttpRequest, queryset: QuerySet[IngestionJob]) -> None:
        retried = 0
        for job in queryset:
            try:
                ingestion_retry(job=job, actor_id=request.user.pk)
                retried += 1
            except IngestionRejected as exc:
                self.message_user(request, f"job {job.pk}: {exc}", messages.WARNING)
        if retried:
            self.message_user(request, f"{retried} job(s) queued again")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
