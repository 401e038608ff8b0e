from django.apps import AppConfig


class DesignReviewConfig(AppConfig):
    name = "design_review"
    verbose_name = "Design review"
    default_auto_field = "django.db.models.BigAutoField"
