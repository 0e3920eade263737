"""The chat page in a real browser: Playwright driving Debian's headless Chromium."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from session_service.config import Settings
from tests.helpers import JWT_SECRET, auth
from tests.sse import uvicorn_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


async def chat(page: Page, text: str) -> None:
    await page.fill("#content", text)
    await page.click("#send")


async def test_chat_page_in_development_mode(
    make_settings: Callable[..., Settings], browser: Browser, tmp_path: Path
) -> None:
    async with uvicorn_server(make_settings(auth_jwt_secret=None)) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 700})
        page.on("dialog", lambda dialog: dialog.accept(dialog.default_value or "Trip to Lisbon 🇵🇹"))
        await page.goto(base)
        await expect(page.locator("#whoami")).to_have_text("development mode")
        await page.click("#new-session")
        await expect(page.locator("#title")).to_have_text("New chat")
        await chat(page, "What should I see in Lisbon? 𝄞")
        reply = page.locator(".message.assistant").last
        await expect(reply).to_contain_text("offline")
        await expect(reply).to_contain_text("What should I see in Lisbon? 𝄞")
        await expect(reply).not_to_have_class("pending")
        await chat(page, "And where should I eat?")
        await expect(page.locator(".message.assistant").last).to_contain_text("2 earlier messages")

        await page.reload()
        await expect(page.locator(".message")).to_have_count(4)
        await expect(page.locator(".message.user").first).to_have_text(
            "What should I see in Lisbon? 𝄞"
        )
        await expect(page.locator("#sessions li.active")).to_contain_text("4 messages")
        shot = os.environ.get("CHAT_PAGE_SCREENSHOT") or str(tmp_path / "chat-page.png")
        await page.screenshot(path=shot)

        session_id = page.url.rsplit("#", 1)[1]
        await page.click("#delete-session")
        await expect(page.locator("#title")).to_have_text("Pick or create a session")
        await expect(page.locator(f'#sessions li[data-id="{session_id}"]')).to_have_count(0)


async def test_chat_page_signs_in_with_a_token(
    make_settings: Callable[..., Settings], browser: Browser
) -> None:
    token = auth("page-user")["Authorization"].removeprefix("Bearer ")
    async with uvicorn_server(make_settings(auth_jwt_secret=JWT_SECRET)) as base:
        page = await browser.new_page()
        await page.goto(base)
        await expect(page.locator("#signin")).to_be_visible()
        await page.fill("#token", "not-a-token")
        await page.click("#signin-form button")
        await expect(page.locator("#signin-error")).to_have_text("That token was refused.")
        await page.fill("#token", token)
        await page.click("#signin-form button")
        await expect(page.locator("#whoami")).to_have_text("signed in")
        page.on("dialog", lambda dialog: dialog.accept("Mine"))
        await page.click("#new-session")
        await chat(page, "hello")
        await expect(page.locator(".message.assistant").last).to_contain_text("offline")
