from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest

from app.models import ApiToken, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "email", "clearance", "is_staff", "is_active")
    list_filter = ("clearance", "is_staff", "is_active", "groups")
    fieldsets = (
        *BaseUserAdmin.fieldsets,  # type: ignore[misc]
        ("Data access", {"fields": ("clearance",)}),
    )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "scopes", "created_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    readonly_fields = ("id", "user", "scopes", "created_at", "expires_at", "revoked_at")
    exclude = ("token_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued with `manage.py issue_token`
