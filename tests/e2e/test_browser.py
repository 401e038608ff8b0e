"""The chat page in a real browser (Debian's Chromium, driven by Playwright) against the
real ASGI app: sign in, ask, watch the streamed answer and its citation, follow it, reload.

ORM work happens only before Playwright starts or after it stops: the sync Playwright API
runs an event loop in this thread, and Django refuses ORM calls while one is running."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect, sync_playwright

from app.models import Conversation, Message

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
FORECAST_QUESTION = "What is the Q3 2026 revenue forecast?"
FORECAST_TITLE = "Q3 2026 Revenue Forecast"
TIMEOUT_MS = 10_000


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium (`bash infra/ensure-chromium.sh`); never a Playwright download."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: run `bash infra/ensure-chromium.sh` as root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


def _assistant_answers(page: Page):
    return page.locator("#messages li.message.assistant")


@pytest.mark.browser
def test_alice_asks_sees_a_cited_streamed_answer_follows_it_and_reloads(
    chromium, demo, asgi_server
):
    console_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def on_page_error(error: Error) -> None:
        console_errors.append(f"uncaught: {error}")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="pw-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page.on("console", on_console)
            page.on("pageerror", on_page_error)

            # Sign in through the allauth form.
            page.goto(f"{asgi_server}/accounts/login/")
            page.screenshot(path=str(SCREENSHOTS / "login.png"))
            page.locator("input[name=login]").fill("alice")
            page.locator("input[name=password]").fill("alice-demo-pass-2026")
            page.locator("form[action='/accounts/login/'] button[type=submit]").click()
            expect(page).to_have_url(f"{asgi_server}/")
            expect(page.locator("header .who")).to_contain_text("alice")

            # Ask; the answer streams in with its citation.
            page.locator("#message").fill(FORECAST_QUESTION)
            page.locator("#send").click()
            answer = _assistant_answers(page).last
            expect(answer.locator(".content")).to_contain_text("48.2")
            expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"))
            # Citations are per chunk: the forecast may be cited more than once.
            citation = (
                answer.locator(".citations a")
                .filter(has_text=re.compile(rf"^{re.escape(FORECAST_TITLE)}$"))
                .first
            )
            expect(citation).to_be_visible()
            expect(page).to_have_url(re.compile(rf"^{re.escape(asgi_server)}/c/\d+/$"))
            chat_url = page.url
            page.screenshot(path=str(SCREENSHOTS / "chat.png"), full_page=True)

            # The citation opens the document.
            citation.click()
            expect(page).to_have_url(re.compile(r"/documents/\d+/$"))
            expect(page.locator("h1")).to_have_text(FORECAST_TITLE)
            page.screenshot(path=str(SCREENSHOTS / "document.png"), full_page=True)

            # Back to the conversation and a full reload: the server renders the history.
            page.go_back()
            expect(page).to_have_url(chat_url)
            page.reload()
            messages = page.locator("#messages li.message")
            expect(messages).to_have_count(2)
            expect(messages.nth(0)).to_have_class(re.compile(r"\buser\b"))
            expect(messages.nth(0).locator(".content")).to_have_text(FORECAST_QUESTION)
            expect(messages.nth(1)).to_have_class(re.compile(r"\bassistant\b"))
            expect(messages.nth(1).locator(".content")).to_contain_text("48.2")
            expect(
                messages.nth(1).locator(".citations a", has_text=FORECAST_TITLE).first
            ).to_be_visible()
            expect(page.locator("#conversation-list li.current a")).to_have_text(FORECAST_QUESTION)
            page.screenshot(path=str(SCREENSHOTS / "chat-reloaded.png"), full_page=True)
        finally:
            if context.pages:
                context.pages[-1].screenshot(path=str(SCREENSHOTS / "last.png"), full_page=True)
            context.close()

    assert console_errors == [], console_errors

    conversation_id = int(chat_url.rstrip("/").rsplit("/", 1)[1])
    conversation = Conversation.objects.get(pk=conversation_id)
    assert conversation.owner.username == "alice"
    assert list(conversation.messages.values_list("role", flat=True)) == [
        Message.Role.USER,
        Message.Role.ASSISTANT,
    ]
