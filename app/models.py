"""Users (with a clearance), API tokens, and conversations."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.db import models

from app.identity import Tier


class User(AbstractUser):
    clearance = models.PositiveSmallIntegerField(
        choices=Tier.choices(),
        default=Tier.PUBLIC,
        help_text="Highest data tier this user may read.",
    )


class ApiToken(models.Model):
    """A short-lived, scoped bearer token. Only a keyed hash of the secret is stored."""

    id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=32))
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"])]

    def __str__(self) -> str:
        return f"token {self.id} for {self.user_id}"


class Conversation(models.Model):
    """Text is encrypted at rest (app/conversation_crypto.py): `title_ct` under this
    conversation's data key, which is stored wrapped by the KEK `kek_id`."""

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="conversations")
    title_ct = models.BinaryField()
    data_key = models.BinaryField()
    kek_id = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return f"conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content_ct = models.BinaryField()  # under the conversation's data key
    provider = models.CharField(max_length=64, blank=True)
    blocked = models.BooleanField(default=False)
    reason = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"


class Citation(models.Model):
    """A chunk an assistant message cited. Re-checked against the ACL whenever shown."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    document_id = models.BigIntegerField()
    chunk_id = models.BigIntegerField()
    title = models.CharField(max_length=300)
    marker = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["marker"]

    def __str__(self) -> str:
        return f"[{self.marker}] document {self.document_id}"


class BreakGlassGrant(models.Model):
    """Time-limited access for one staff member to one user's conversations, with a reason.
    Staff cannot read conversations without one; every view under it is audited."""

    staff = models.ForeignKey(User, on_delete=models.CASCADE, related_name="break_glass_grants")
    subject = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["staff", "subject", "expires_at"])]

    def __str__(self) -> str:
        return f"break-glass {self.pk}: {self.staff_id} → {self.subject_id}"
