"""API input validation and output shapes. Output serializers render the replies, so the
OpenAPI schema and what the API actually sends cannot drift apart."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers


class ChatInput(serializers.Serializer):
    message = serializers.JSONField(help_text="The question (a string).")
    conversation = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    def validate_message(self, value: Any) -> str:
        if not isinstance(value, str):
            raise serializers.ValidationError("must be a string")
        return value


class CitationOut(serializers.Serializer):
    document = serializers.IntegerField()
    title = serializers.CharField()
    chunk = serializers.IntegerField()
    marker = serializers.IntegerField()


class ToolRunOut(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    reason = serializers.CharField()
    documents = serializers.ListField(child=serializers.IntegerField())


class ChatOut(serializers.Serializer):
    conversation = serializers.IntegerField(allow_null=True)
    message_id = serializers.IntegerField(allow_null=True)
    answer = serializers.CharField()
    citations = CitationOut(many=True)
    blocked = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True)
    provider = serializers.CharField(allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(), required=False)
    tools = ToolRunOut(many=True, required=False)
    request_id = serializers.CharField()


class ConversationOut(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ConversationListOut(serializers.Serializer):
    conversations = ConversationOut(many=True)


class StoredCitationOut(serializers.Serializer):
    document = serializers.IntegerField(source="document_id")
    chunk = serializers.IntegerField(source="chunk_id")
    marker = serializers.IntegerField()
    title = serializers.SerializerMethodField()
    available = serializers.BooleanField()

    def get_title(self, citation: Any) -> str | None:
        return citation.title if citation.available else None


class MessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.CharField()
    content = serializers.CharField()
    provider = serializers.SerializerMethodField()
    blocked = serializers.BooleanField()
    created_at = serializers.CharField()
    citations = StoredCitationOut(many=True)

    def get_provider(self, message: Any) -> str | None:
        return message.provider or None


class ConversationDetailOut(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    messages = MessageOut(many=True)


class SearchInput(serializers.Serializer):
    q = serializers.CharField(max_length=1000)
    k = serializers.IntegerField(required=False, min_value=1)

    def validate_k(self, value: int) -> int:
        if value > settings.RETRIEVAL_MAX_K:
            raise serializers.ValidationError(f"must be at most {settings.RETRIEVAL_MAX_K}")
        return value


class SearchResultOut(serializers.Serializer):
    document = serializers.IntegerField(source="document_id")
    title = serializers.CharField()
    chunk = serializers.IntegerField(source="chunk_id")
    text = serializers.CharField()
    score = serializers.FloatField()


class SearchOut(serializers.Serializer):
    results = SearchResultOut(many=True)


class DocumentOut(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    title = serializers.CharField()
    classification = serializers.CharField(source="tier.label")
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class DocumentListOut(serializers.Serializer):
    documents = DocumentOut(many=True)


class ErrorOut(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()
    request_id = serializers.CharField()


class DocumentUploadInput(serializers.Serializer):
    file = serializers.FileField()
    title = serializers.CharField(max_length=300, required=False, allow_blank=True)
    classification = serializers.ChoiceField(
        choices=["public", "internal", "confidential", "restricted"]
    )
    allow_users = serializers.CharField(required=False, allow_blank=True, default="")
    allow_groups = serializers.CharField(required=False, allow_blank=True, default="")
    all_authenticated = serializers.BooleanField(required=False, default=False)


class DocumentContentInput(serializers.Serializer):
    file = serializers.FileField()


class DocumentVersionOut(serializers.Serializer):
    document = serializers.IntegerField(source="pk")
    version = serializers.IntegerField()
    changed = serializers.BooleanField()


class IngestionJobOut(serializers.Serializer):
    job = serializers.IntegerField(source="pk")
    document = serializers.IntegerField(source="document_id")
    state = serializers.CharField()
    progress = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)


class TokenIssueInput(serializers.Serializer):
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        allow_empty=False,
        max_length=8,
        help_text="Subset of chat, search, documents (default: all of the caller's).",
    )
    ttl = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Lifetime in seconds (default and maximum: API_TOKEN_SESSION_MAX_TTL_S).",
    )


class TokenOut(serializers.Serializer):
    id = serializers.UUIDField()
    token = serializers.CharField(help_text="The bearer secret; shown once, never stored.")
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField()
