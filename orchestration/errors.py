"""Errors the pipeline raises; the edge maps them to responses."""


class InputRejected(ValueError):
    """The request itself is malformed (400). Nothing is recorded."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Blocked(Exception):
    """A control stopped the turn. `user_message` is safe to show; `reason_code` is audited."""

    def __init__(self, reason_code: str, user_message: str) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code
        self.user_message = user_message
