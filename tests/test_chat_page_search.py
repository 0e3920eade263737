"""Search on the chat page, in a real browser (the fixtures: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from tests.fakes.openai import FakeLLM
from tests.helpers import JWT_SECRET, add_messages, answered, auth, new_session
from tests.sse import uvicorn_server


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
