"""The chat page in a real browser: Playwright driving Debian's headless Chromium."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from tests.fakes.openai import FakeLLM
from tests.helpers import JWT_SECRET, add_messages, answered, auth, new_session
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
        modules = ("/static/app.js", "/static/api.js", "/static/dom.js", "/static/search.js")
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


async def _sign_in(page: Page, url: str, headers: dict[str, str]) -> None:
    """Open the page at `url` and sign in with the bearer token of `headers`."""
    await page.goto(url)
    await page.fill("#token", headers["Authorization"].removeprefix("Bearer "))
    await page.click("#signin-form button")
    await expect(page.locator("#whoami")).to_have_text("signed in")


async def _search(page: Page, query: str) -> None:
    """Type a query into the sidebar's search box and press Enter."""
    await page.fill("#search", query)
    await page.press("#search", "Enter")


async def test_search_in_the_sidebar(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, browser: Browser
) -> None:
    """Results stand in for the session list; a result opens its session at the message,
    switching to the message's branch first; Chinese is found by substring; user content is
    shown as text."""
    answers = {
        "我想去北京旅游": "好的。我们来计划行程。",
        "What about the weather in spring?": "Spring is mild and windy.",
        "Which museums should I visit?": "The Palace Museum, for a whole day.",
        "How do I cook rice?": "Rinse the rice, then simmer it.",
    }
    fake_llm.reply = lambda messages: answers.get(messages[-1]["content"], "noted")
    async with (
        uvicorn_server(llm_settings(auth_jwt_secret=JWT_SECRET)) as base,
        httpx.AsyncClient(base_url=base, headers=auth("search-user")) as http,
    ):
        trip = await new_session(http, {}, title="Beijing trip")
        first = await answered(http, {}, trip, "我想去北京旅游")
        weather = await answered(http, {}, trip, "What about the weather in spring?")
        # an edit of the second question: the weather exchange is left on another branch
        parent = first["assistant_message"]["id"]
        await answered(http, {}, trip, "Which museums should I visit?", parent_id=parent)
        cooking = await new_session(http, {}, title="Cooking")
        await answered(http, {}, cooking, "How do I cook rice?")
        await answered(http, {}, cooking, "Is <img src=x onerror=alert(1)> a zebra?")

        page = await browser.new_page(viewport={"width": 1100, "height": 700})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await _sign_in(page, f"{base}/#{trip}", auth("search-user"))
        await expect(page.locator(".message.user .body").last).to_have_text(
            "Which museums should I visit?"
        )
        await expect(page.get_by_role("searchbox", name="Search chats")).to_be_visible()
        results = page.locator("#results .hit")

        # typing searches (after a pause): results replace the list, the words highlighted
        await page.fill("#search", "RICE")
        await expect(results).to_have_count(2)
        await expect(page.locator("#sessions")).to_be_hidden()
        await expect(results.locator(".title")).to_have_text(["Cooking", "Cooking"])
        await expect(results.locator(".snippet")).to_have_text(
            ["Rinse the rice, then simmer it.", "How do I cook rice?"]
        )
        await expect(results.first.locator("mark")).to_have_text("rice")
        await results.first.click()
        await expect(page.locator("#title")).to_have_text("Cooking")
        await expect(page.locator(".message.found .body")).to_have_text(
            "Rinse the rice, then simmer it."
        )

        # a message on a branch not shown: the page switches to it, and shows it highlighted
        await _search(page, "windy spring")
        await expect(results).to_have_count(1)
        await expect(results.first.locator(".title")).to_have_text("Beijing trip")
        await expect(results.first.locator("mark")).to_have_text(["Spring", "windy"])
        await results.first.click()
        found = page.locator(".message.found")
        await expect(found).to_have_count(1)
        await expect(found.locator(".body")).to_have_text("Spring is mild and windy.")
        await expect(found).to_be_in_viewport()
        await expect(page.locator(".message.user .body").last).to_have_text(
            "What about the weather in spring?"
        )
        await expect(page.locator(".message.user .count").last).to_have_text("1/2")
        assert page.url.endswith(f"#{trip}")
        session = (await http.get(f"/api/sessions/{trip}")).json()
        assert session["active_message_id"] == weather["assistant_message"]["id"]

        # Chinese, by substring
        await _search(page, "北京")
        await expect(results).to_have_count(1)
        await expect(results.first.locator(".snippet")).to_have_text("我想去北京旅游")
        await expect(results.first.locator("mark")).to_have_text("北京")
        await results.first.click()
        await expect(page.locator(".message.found .body")).to_have_text("我想去北京旅游")

        # a title hit opens the session; a snippet holding HTML is shown as text
        await _search(page, "cooking")
        await expect(results).to_have_count(1)
        await expect(results.first.locator("small")).to_have_text("title")
        await results.first.click()
        await expect(page.locator("#title")).to_have_text("Cooking")
        await _search(page, "zebra")
        await expect(results.first.locator(".snippet")).to_contain_text("<img src=x")
        await expect(page.locator("#results img")).to_have_count(0)

        # nothing found; then the box cleared brings the session list back
        await _search(page, "giraffe")
        await expect(page.locator("#search-status")).to_have_text("No results")
        await expect(results).to_have_count(0)
        await page.fill("#search", "")
        await expect(page.locator("#results")).to_be_hidden()
        await expect(page.locator("#search-status")).to_be_hidden()
        await expect(page.locator("#sessions li")).to_have_count(2)
        await expect(page.locator("#sessions li.active")).to_contain_text("Cooking")
        assert errors == []


async def test_search_pages_its_results_and_the_history_it_opens(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    browser: Browser,
    db: async_sessionmaker[AsyncSession],
) -> None:
    """ "More" follows next_cursor; a hit older than the messages a session shows at first has
    the older pages loaded to show it."""
    fake_llm.reply = lambda _messages: "noted"
    async with (
        uvicorn_server(llm_settings(auth_jwt_secret=JWT_SECRET)) as base,
        httpx.AsyncClient(base_url=base, headers=auth("paging-user")) as http,
    ):
        for number in range(22):
            await new_session(http, {}, title=f"Filler {number}")
        long = await new_session(http, {}, title="Long one")
        question = (await answered(http, {}, long, "Remember the pelican"))["user_message"]
        await add_messages(db, long, [f"later message {n}" for n in range(240)])

        page = await browser.new_page(viewport={"width": 1100, "height": 700})
        await _sign_in(page, base, auth("paging-user"))
        results = page.locator("#results .hit")
        await _search(page, "filler")
        await expect(results).to_have_count(20)
        await page.click("#search-more")
        await expect(results).to_have_count(22)
        await expect(page.locator("#search-more")).to_be_hidden()
        await expect(results.last.locator(".title")).to_have_text("Filler 0")

        await _search(page, "pelican")
        await expect(results).to_have_count(1)
        await results.first.click()
        found = page.locator(".message.found")
        await expect(found.locator(".body")).to_have_text("Remember the pelican")
        await expect(found).to_be_in_viewport()
        assert await found.get_attribute("data-id") == str(question["id"])
        await expect(page.locator(".message")).to_have_count(242)
