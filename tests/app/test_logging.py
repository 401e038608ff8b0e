"""Logs are JSON with the request id on each line, name users only by a keyed hash, and
never carry the prompt, the answer or PII."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from app.logs import logging_config
from app.services import user_log_hash

PII_MESSAGE = (
    "My name is Jane Roe, e-mail jane.roe@example.com, phone 555-0199: what is the per diem?"
)


def _as_text(record: logging.LogRecord) -> str:
    payload: Any = record.msg if isinstance(record.msg, dict) else record.getMessage()
    return json.dumps(payload, default=str)


@pytest.mark.usefixtures("demo")
def test_pii_laden_chat_turn_leaves_no_pii_in_logs(client, bearer, caplog, user_named):
    caplog.set_level(logging.DEBUG)
    response = client.post(
        "/api/v1/chat", data=json.dumps({"message": PII_MESSAGE}),
        content_type="application/json", **bearer("alice"),
    )  # fmt: skip
    assert response.status_code == 200
    logged = "\n".join(_as_text(r) for r in caplog.records)
    assert logged, "nothing was logged"
    for fragment in (
        "Jane Roe",
        "jane.roe",
        "555-0199",
        "per diem",
        response.json()["answer"][:30],
    ):
        assert fragment not in logged

    request_lines = [r.msg for r in caplog.records if r.name == "app.request"]
    assert request_lines
    assert all(line["request_id"] == response["X-Request-ID"] for line in request_lines)
    alice = user_named("alice")
    assert request_lines[-1]["user"] == user_log_hash(alice.pk)
    assert str(alice.pk) != request_lines[-1]["user"]


def test_log_lines_render_as_one_json_object_each():
    config = logging_config("INFO")
    formatter_spec = dict(config["formatters"]["json"])
    formatter = formatter_spec.pop("()")(**formatter_spec)
    record = logging.LogRecord("app.test", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    line = formatter.format(record)
    parsed = json.loads(line)
    assert parsed["event"] == "hello x"
    assert parsed["level"] == "info"
    assert "\n" not in line
