from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from app.conversation_crypto import conversation_title, data_key, message_content
from app.models import ApiToken, BreakGlassGrant, Conversation, Message, User
from app.selectors import break_glass_subjects
from app.services import (
    BREAK_GLASS_MAX_MINUTES,
    BREAK_GLASS_MIN_REASON,
    admin_view_record,
    break_glass_open,
)


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


def _staff_id(request: HttpRequest) -> int:
    if request.user.pk is None:
        raise PermissionDenied
    return int(request.user.pk)


class BreakGlassForm(forms.ModelForm):
    minutes = forms.IntegerField(
        min_value=1, max_value=BREAK_GLASS_MAX_MINUTES, initial=15, help_text="how long"
    )

    class Meta:
        model = BreakGlassGrant
        fields = ("subject", "reason")

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data["reason"]).strip()
        if len(reason) < BREAK_GLASS_MIN_REASON:
            raise forms.ValidationError(
                f"Give a reason of at least {BREAK_GLASS_MIN_REASON} characters."
            )
        return reason


@admin.register(BreakGlassGrant)
class BreakGlassGrantAdmin(admin.ModelAdmin):
    """Break the glass: a reason and a duration buy time-limited, audited read access to
    one user's conversations. Grants cannot be edited or deleted afterwards."""

    form = BreakGlassForm
    list_display = ("id", "staff", "subject", "created_at", "expires_at")
    readonly_fields = ("staff", "created_at", "expires_at")

    def save_model(
        self, request: HttpRequest, obj: BreakGlassGrant, form: Any, change: bool
    ) -> None:
        grant = break_glass_open(
            staff=request.user,  # type: ignore[arg-type]
            subject=form.cleaned_data["subject"],
            reason=form.cleaned_data["reason"],
            minutes=form.cleaned_data["minutes"],
            request_id=getattr(request, "request_id", ""),
        )
        obj.pk = grant.pk
        obj.expires_at = grant.expires_at

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Users' conversations are private: staff see only those of users they hold a live
    break-glass grant for, and each conversation they open is audited. The list shows no
    titles (they are user text, read only in the audited change view); the change view
    decrypts the title and transcript with one unwrap of the conversation's data key."""

    list_display = ("id", "owner", "created_at", "updated_at")
    fields = ("owner", "title", "created_at", "updated_at", "transcript")
    readonly_fields = fields

    @admin.display(description="title")
    def title(self, obj: Conversation) -> str:
        return conversation_title(obj, data_key(obj))

    @admin.display(description="messages")
    def transcript(self, obj: Conversation) -> str:
        key = data_key(obj)
        rows = Message.objects.filter(conversation=obj).only("id", "role", "content_ct")
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                "<li><strong>{}</strong>: {}</li>",
                ((m.role, message_content(m, key)) for m in rows),
            ),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super().get_queryset(request).filter(owner__in=break_glass_subjects(_staff_id(request)))
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        conversation = self.get_queryset(request).filter(pk=object_id).first()
        if conversation is not None:
            admin_view_record(
                staff_id=_staff_id(request),
                conversation=conversation,
                request_id=getattr(request, "request_id", ""),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
