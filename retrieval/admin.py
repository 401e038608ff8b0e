from django.contrib import admin

from retrieval.models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "classification",
        "all_authenticated",
        "status",
        "version",
        "updated_at",
    )
    list_filter = ("classification", "status", "all_authenticated")
    search_fields = ("title", "source_name")
    filter_horizontal = ("allowed_users", "allowed_groups")
    readonly_fields = ("source_name", "content_sha256", "version", "status", "error", "text")
