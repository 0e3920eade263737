"""The chat page in a real browser: Playwright driving Debian's headless Chromium."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.async_api import Browser, Dialog, Page, expect

from session_service.config import Settings
from tests.fakes.openai import FakeLLM
from tests.helpers import JWT_SECRET, auth
from tests.sse import uvicorn_server


async def chat(page: Page, text: str) -> None:
    await page.fill("#content", text)
    await page.click("#send")


async def test_chat_page_in_development_mode(
    make_settings: Callable[..., Settings], browser: Browser, tmp_path: Path
) -> None:
    async with uvicorn_server(make_settings(auth_jwt_secret=None)) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 700})
        page.on("dialog", lambda dialog: dialog.accept(""))  # no title: one is made
        await page.goto(base)
        await expect(page.locator("#whoami")).to_have_text("development mode")
        await page.click("#new-session")
        await expect(page.locator("#title")).to_have_text("New chat")
        await chat(page, "What should I see in Lisbon? 𝄞")
        reply = page.locator(".message.assistant").last
        await expect(reply).to_contain_text("offline")
        await expect(reply).to_contain_text("What should I see in Lisbon? 𝄞")
        await expect(reply).not_to_have_class("pending")
        await expect(page.locator("#title")).to_have_text("What should I see in Lisbon? 𝄞")
        await expect(page.locator("#sessions li.active")).to_contain_text("Lisbon?")
        await chat(page, "And where should I eat?")
        await expect(page.locator(".message.assistant").last).to_contain_text("2 earlier messages")

        await page.reload()
        await expect(page.locator(".message")).to_have_count(4)
        await expect(page.locator(".message.user .body").first).to_have_text(
            "What should I see in Lisbon? 𝄞"
        )
        await expect(page.locator("#sessions li.active")).to_contain_text("4 messages")

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


async def _answered(page: Page, count: int) -> None:
    """Wait until the page shows `count` finished answers and no reply streaming."""
    await expect(page.locator(".message.assistant .controls")).to_have_count(count)
    await expect(page.locator(".message.assistant.pending")).to_have_count(0)


async def test_conversation_control_on_the_page(
    ragflow_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    browser: Browser,
    tmp_path: Path,
) -> None:
    """Stop, edit, switch, regenerate, feedback, fork, and a reload mid-stream, as a person
    does them, with RAGFlow's references shown; and an answer that carries HTML runs no
    script. CHAT_PAGE_SCREENSHOT=docs/chat-page.png saves the README's picture."""
    answers = iter(
        [
            "Porto's **Ribeira** is the place: by the river, see the *Dom Luís I* bridge.",
            "second answer",
            "edited answer",
            "In April: the `Serralves` gardens in bloom, then the port cellars.",
        ]
    )
    fake_llm.reply = lambda _messages: next(answers, "more")
    async with uvicorn_server(ragflow_settings(auth_jwt_secret=None)) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        dialogs: list[str] = []

        async def answer(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.accept("Tree")

        page.on("dialog", answer)
        await page.goto(base)
        await page.click("#new-session")
        await expect(page.locator("#title")).to_have_text("Tree")
        await chat(page, "Where should I stay in Porto?")
        await _answered(page, 1)
        await expect(page.locator(".message.assistant .body strong")).to_have_text("Ribeira")
        await expect(page.locator(".message.assistant .chip").first).to_have_text("geography.pdf")
        await chat(page, "And what to see in April?")
        await _answered(page, 2)

        # edit the second question: a new branch, and a "2/2" pager on it
        await page.locator(".message.user .edit").last.click()
        await page.fill(".editor textarea", "And what to see in May?")
        await page.click(".editor button:not(.link)")
        await _answered(page, 2)
        await expect(page.locator(".message.assistant .body").last).to_have_text("edited answer")
        await expect(page.locator(".message.user .count").last).to_have_text("2/2")
        # switch back to the first branch
        await page.locator(".message.user .prev").last.click()
        await expect(page.locator(".message.user .count").last).to_have_text("1/2")
        await expect(page.locator(".message.assistant .body").last).to_have_text("second answer")

        # regenerate the last answer: the old one stays a click away
        await page.locator(".message.assistant .regenerate").click()
        await _answered(page, 2)
        await expect(page.locator(".message.assistant .body").last).to_contain_text("Serralves")
        await expect(page.locator(".message.assistant .count").last).to_have_text("2/2")
        shot = os.environ.get("CHAT_PAGE_SCREENSHOT") or str(tmp_path / "chat-page.png")
        await page.screenshot(path=shot)

        # rate it; the rating is shown after a reload
        await page.locator(".message.assistant .rate.up").last.click()
        await expect(page.locator(".message.assistant .rate.up.chosen")).to_have_count(1)
        await page.reload()
        await expect(page.locator(".message.assistant .rate.up.chosen")).to_have_count(1)

        # stop a reply mid-stream: what it said stays, marked stopped
        fake_llm.reply = lambda _messages: " ".join(f"word{i}" for i in range(300))
        fake_llm.chunk_delay = 0.03
        await chat(page, "a long one")
        await expect(page.locator("#stop")).to_be_visible()
        await expect(page.locator(".message.assistant.pending .body")).to_contain_text("word5")
        await page.click("#stop")
        await _answered(page, 3)
        await expect(page.locator(".message.assistant .note").last).to_have_text("stopped")
        await expect(page.locator("#send")).to_be_visible()

        # a reload mid-stream rejoins the reply and shows it whole
        fake_llm.reply = lambda _messages: " ".join(f"again{i}" for i in range(40))
        await chat(page, "and again")
        await expect(page.locator(".message.assistant.pending .body")).to_contain_text("again3")
        await page.reload()
        await _answered(page, 4)
        await expect(page.locator(".message.assistant .body").last).to_contain_text("again39")

        # fork from the first answer: a new session holding the first exchange
        fake_llm.chunk_delay = 0
        source = page.url.rsplit("#", 1)[1]
        await page.locator(".message.assistant .fork").first.click()
        await expect(page.locator(".message")).to_have_count(2)
        await expect(page.locator("#sessions li.active")).to_contain_text("2 messages")
        assert page.url.rsplit("#", 1)[1] != source

        # an answer carrying HTML is shown sanitised: no script runs
        fake_llm.reply = lambda _messages: (
            "look <img src=x onerror=alert(1)> <script>alert(2)</script>"
        )
        await chat(page, "html?")
        await _answered(page, 2)
        await expect(page.locator(".message.assistant .body img")).to_have_count(1)
        assert await page.locator(".message.assistant .body img").get_attribute("onerror") is None
        await expect(page.locator(".message.assistant .body script")).to_have_count(0)
        assert dialogs == ["Title of the new session (empty: made from your first message)"]


async def test_the_page_is_served_with_a_strict_content_security_policy(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        uvicorn_server(make_settings(auth_jwt_secret=None)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        modules = (
            "/static/app.js",
            "/static/api.js",
            "/static/dom.js",
            "/static/search.js",
            "/static/steps.js",
        )
        for path in ("/", *modules, "/static/vendor/purify.min.js"):
            response = await http.get(path)
            assert response.status_code == 200
            if path.endswith(".js"):  # a module of another type is refused under nosniff
                assert "javascript" in response.headers["content-type"]
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy
            assert "default-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
            assert "unsafe-inline" not in policy
            assert response.headers["x-content-type-options"] == "nosniff"
        api = await http.get("/api/sessions")
        assert "content-security-policy" not in api.headers


async def test_pin_and_archive_in_the_sidebar(
    make_settings: Callable[..., Settings], browser: Browser
) -> None:
    token = auth("sidebar-user")["Authorization"].removeprefix("Bearer ")
    async with uvicorn_server(make_settings(auth_jwt_secret=JWT_SECRET)) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 700})
        await page.goto(base)
        await page.fill("#token", token)
        await page.click("#signin-form button")
        titles = iter(["older", "newer"])
        page.on("dialog", lambda dialog: dialog.accept(next(titles)))
        for _ in range(2):
            await page.click("#new-session")
        sessions = page.locator("#sessions li")
        await expect(sessions.first).to_contain_text("newer")
        await sessions.nth(1).locator(".pin").click()  # pin the older: it goes first
        await expect(sessions.first).to_contain_text("older")
        await expect(sessions.first).to_have_class(re.compile(r"\bpinned\b"))
        await sessions.nth(1).locator(".archive").click()  # archive the newer: it goes
        await expect(sessions).to_have_count(1)
        await page.click("#show-archived")
        await expect(sessions).to_have_count(1)
        await expect(sessions.first).to_contain_text("newer")
        await sessions.first.locator(".archive").click()  # unarchive it
        await expect(sessions).to_have_count(0)
        await page.click("#show-archived")
        await expect(sessions).to_have_count(2)
