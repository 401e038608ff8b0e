from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.selectors import events_touching_document


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only. Search also understands `actor:ID` and `document:ID` (every event that
    showed or changed that document, chat turns included)."""

    list_display = ("id", "created_at", "event_type", "actor_id", "decision", "reason", "subject")
    list_filter = ("event_type", "decision")
    search_fields = ("request_id", "subject")
    search_help_text = "request id, subject, actor:ID or document:ID"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        kind, _, value = search_term.strip().partition(":")
        if value.isdigit() and kind == "actor":
            return queryset.filter(actor_id=int(value)), False
        if value.isdigit() and kind == "document":
            return queryset.filter(pk__in=events_touching_document(int(value)).values("pk")), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
