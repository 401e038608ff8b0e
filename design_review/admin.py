from django.contrib import admin

from design_review.models import LiveReview


@admin.register(LiveReview)
class LiveReviewAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "highest_severity",
        "open_findings",
        "attack_paths",
        "triggered_by",
    )
    readonly_fields = [f.name for f in LiveReview._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
