"""Errors the pipeline raises; the edge maps them to responses."""

from __future__ import annotations

from typing import Any

from audit.models import EventType


class InputRejected(ValueError):
    """The request itself is malformed (400). Nothing is recorded."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Blocked(Exception):
    """A control stopped the turn. `user_message` is safe to show; `reason_code` is audited.

    The control that raises it does not audit the block itself: it carries what the audit
    event needs (event type, subject, its scores/rule ids — never text) and the edge that
    handles the refusal records exactly one event (`app.services.chat_refusal_record`)."""

    def __init__(
        self,
        reason_code: str,
        user_message: str,
        *,
        event_type: EventType = EventType.CHAT_BLOCKED,
        subject: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code
        self.user_message = user_message
        self.event_type = event_type
        self.subject = subject
        self.metadata: dict[str, Any] = dict(metadata or {})
