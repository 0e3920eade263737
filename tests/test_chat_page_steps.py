"""The tool-using agent's steps on the chat page (AGENT_GROUNDING=tools), in a real browser:
shown live from tool_start / tool_end while a reply streams, and from metadata.steps when a
stored reply is shown (the fixtures: tests/conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.async_api import Browser, Locator, Page, expect

from session_service.config import Settings
from tests.fakes.openai import FakeLLM, ToolCall
from tests.fakes.ragflow import FakeRagflow
from tests.helpers import JWT_SECRET, auth
from tests.sse import uvicorn_server
from tests.test_chat_page_search import _sign_in

QUESTION = "What is the capital of France?"


def _tools(ragflow_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "agent_grounding": "tools",
        "ragflow_dataset_ids": "ds-1",
        "auth_jwt_secret": JWT_SECRET,
        "agent_tool_timeout_seconds": 8,  # under the fake LLM's LLM_TIMEOUT_SECONDS (10)
    }
    return ragflow_settings(**values | overrides)


def _search_then_answer(fake_llm: FakeLLM) -> None:
    """The model: a knowledge-base search for the question, then "Paris." once it answered."""
    fake_llm.reply = lambda messages: (
        "Paris."
        if messages[-1]["role"] == "tool"
        else [ToolCall("search_knowledge_base", {"query": "capital of France"})]
    )


async def _open_session(page: Page, base: str, user: str) -> list[str]:
    """Sign in as `user` and make a session; the page's JavaScript errors, as they come."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept("Capitals"))
    await _sign_in(page, base, auth(user))
    await page.click("#new-session")
    await expect(page.locator("#title")).to_have_text("Capitals")
    return errors


async def _ask(page: Page, text: str) -> None:
    await page.fill("#content", text)
    await page.click("#send")


async def _answered(page: Page, count: int) -> Locator:
    """Wait for `count` finished answers, none streaming; the last one."""
    await expect(page.locator(".message.assistant .controls")).to_have_count(count)
    await expect(page.locator(".message.assistant.pending")).to_have_count(0)
    return page.locator(".message.assistant").last


async def _shows_the_search_step(reply: Locator) -> None:
    step = reply.locator(".steps .step")
    await expect(step).to_have_count(1)
    await expect(step).to_have_class(re.compile(r"\bdone\b"))
    await expect(step.locator(".tool")).to_have_text("search_knowledge_base")
    await expect(step.locator(".input")).to_have_text('query: "capital of France"')
    await expect(step.locator(".status")).to_have_text(re.compile(r"^1 source · \d+(\.\d)? m?s$"))
    await expect(step.locator(".status")).to_have_attribute("title", "geography.pdf")
    await expect(step.locator("details pre")).to_contain_text("Paris is the capital of France.")
    await expect(step.locator("details")).not_to_have_attribute("open", "")
    await expect(reply.locator(".body")).to_have_text("Paris.")
    await expect(reply.locator(".chip")).to_have_text(["geography.pdf"])


async def test_a_reply_shows_its_steps_live_and_after_a_reload(
    ragflow_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    fake_ragflow: FakeRagflow,
    browser: Browser,
) -> None:
    """While the tool runs the step shows as searching; once it ended, its sources and time,
    then the answer; a reload shows it again from metadata.steps; a reply without tools has
    no steps."""
    _search_then_answer(fake_llm)
    async with uvicorn_server(_tools(ragflow_settings)) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        errors = await _open_session(page, base, "steps-user")
        fake_ragflow.fail, fake_ragflow.slow_seconds = "slow", 1.5  # the search takes a while
        await _ask(page, QUESTION)
        running = page.locator(".message.assistant.pending .step.running")
        await expect(running).to_have_count(1)
        await expect(running.locator(".tool")).to_have_text("search_knowledge_base")
        await expect(running.locator(".input")).to_have_text('query: "capital of France"')
        await expect(running.locator(".status")).to_have_text("searching…")
        fake_ragflow.fail = None

        reply = await _answered(page, 1)
        await _shows_the_search_step(reply)
        # the steps come before the answer's text, inside its bubble
        assert await reply.evaluate(
            "item => item.querySelector('.steps').nextElementSibling.classList.contains('body')"
        )

        await page.reload()
        reply = await _answered(page, 1)
        await _shows_the_search_step(reply)

        # a reply the model gave without calling a tool shows no steps
        fake_llm.reply = lambda _messages: "No tool needed."
        await _ask(page, "hello")
        reply = await _answered(page, 2)
        await expect(reply.locator(".body")).to_have_text("No tool needed.")
        await expect(reply.locator(".steps")).to_have_count(0)
        await expect(page.locator(".message.assistant .step")).to_have_count(1)
        assert errors == []


async def test_a_failing_tool_shows_its_error(
    ragflow_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    fake_ragflow: FakeRagflow,
    browser: Browser,
) -> None:
    """RAGFlow fails: the step shows the error, styled as one, and the model's answer after
    it; so does a reload."""
    fake_llm.reply = lambda messages: (
        "Sorry, no sources."
        if messages[-1]["role"] == "tool"
        else [ToolCall("search_knowledge_base", {"query": "capital of France"})]
    )
    async with uvicorn_server(_tools(ragflow_settings, ragflow_timeout_seconds=1)) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        errors = await _open_session(page, base, "failing-user")
        fake_ragflow.fail = "502"
        await _ask(page, QUESTION)
        for attempt in range(2):
            reply = await _answered(page, 1)
            step = reply.locator(".step")
            await expect(step).to_have_count(1)
            await expect(step).to_have_class(re.compile(r"\bfailed\b"))
            await expect(step.locator(".tool")).to_have_text("search_knowledge_base")
            await expect(step.locator(".status.error")).to_have_text(re.compile(r"^error: \S"))
            await expect(step.locator(".status")).not_to_contain_text("source")
            await expect(reply.locator(".body")).to_have_text("Sorry, no sources.")
            await expect(reply.locator(".chip")).to_have_count(0)
            color = await step.locator(".status").evaluate("node => getComputedStyle(node).color")
            assert color == "rgb(179, 38, 30)"  # the page's error red
            if attempt == 0:
                await page.reload()
        assert errors == []


async def test_a_reload_mid_step_rejoins_the_reply_with_its_steps(
    ragflow_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    fake_ragflow: FakeRagflow,
    browser: Browser,
) -> None:
    """Reloaded while the tool runs, the page follows the reply again (the rejoin stream) and
    shows the step as it runs and ends, each step once."""
    _search_then_answer(fake_llm)
    async with uvicorn_server(_tools(ragflow_settings)) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        errors = await _open_session(page, base, "rejoin-user")
        fake_ragflow.fail, fake_ragflow.slow_seconds = "slow", 2.5
        await _ask(page, QUESTION)
        await expect(page.locator(".message.assistant .step.running")).to_have_count(1)
        await page.reload()
        running = page.locator(".message.assistant.pending .step.running")
        await expect(running).to_have_count(1)
        await expect(running.locator(".input")).to_have_text('query: "capital of France"')
        fake_ragflow.fail = None
        reply = await _answered(page, 1)
        await _shows_the_search_step(reply)
        assert errors == []
