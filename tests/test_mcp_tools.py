"""MCP servers' tools for the tool-using agent (api-v2 §5): listed at start, called through
langchain-mcp-adapters against a real MCP server; a server down at start, dropped mid-turn,
slow or answering a megabyte makes a failed or shortened step, never a failed turn or start."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from session_service import main
from session_service.config import ConfigError, Settings, load_settings
from tests.conftest import serve_app
from tests.fakes.mcp import mcp_server
from tests.fakes.openai import FakeLLM, ToolCall
from tests.helpers import Headers, answered, eventually, new_session
from tests.processes import free_port


def _with_mcp(llm_settings: Callable[..., Settings], url: str, **overrides: Any) -> Settings:
    servers = {"calc": {"transport": "streamable_http", "url": url}}
    values = {"agent_tool_timeout_seconds": 5, **overrides}  # under the tests' LLM timeout
    return llm_settings(agent_grounding="tools", mcp_servers=json.dumps(servers), **values)


def _calling(call: ToolCall) -> Callable[[list[dict[str, Any]]], Any]:
    """The model: this call for a question, then an answer quoting the tool's."""
    return lambda m: f"got {m[-1]['content'][:20]}" if m[-1]["role"] == "tool" else [call]


async def test_an_mcp_tool_is_called_as_a_step(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.reply = _calling(ToolCall("calc_add", {"a": 2, "b": 3}))
    async with mcp_server() as (url, _), serve_app(_with_mcp(llm_settings, url)) as client:
        session_id = await new_session(client, alice)
        turn = await answered(client, alice, session_id, "2 + 3?")
    reply = turn["assistant_message"]
    (step,) = reply["metadata"]["steps"]
    assert (step["tool"], step["input"], step["output"]) == ("calc_add", {"a": 2, "b": 3}, "5")
    assert reply["content"] == "got 5"
    offered = {tool["function"]["name"] for tool in fake_llm.calls[0]["tools"]}
    assert offered == {"calc_add", "calc_big", "calc_slow"}


async def test_a_megabyte_and_a_slow_tool(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    settings_for = lambda url: _with_mcp(llm_settings, url, agent_tool_timeout_seconds=0.5)  # noqa: E731
    async with mcp_server() as (url, _), serve_app(settings_for(url)) as client:
        session_id = await new_session(client, alice)
        fake_llm.reply = _calling(ToolCall("calc_big", {}))
        big = (await answered(client, alice, session_id, "big?"))["assistant_message"]
        sent = fake_llm.calls[-1]["messages"][-1]
        fake_llm.reply = _calling(ToolCall("calc_slow", {"seconds": 5}))
        slow = (await answered(client, alice, session_id, "slow?"))["assistant_message"]
    (step,) = big["metadata"]["steps"]
    assert step["output"] == "x" * 4000
    assert sent["role"] == "tool"
    assert len(sent["content"]) == 4000  # the model reads what the step keeps
    (step,) = slow["metadata"]["steps"]
    assert step["error"] == "the tool took longer than 0.5 s"
    assert slow["content"] == "got Error: the tool took"


async def test_a_server_down_at_start_comes_up_and_one_that_drops_is_reached_again(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(main, "MCP_RETRY_SECONDS", 0.2)
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    async with serve_app(_with_mcp(llm_settings, url)) as client:  # nothing listens yet
        session_id = await new_session(client, alice)
        await answered(client, alice, session_id, "no tools yet?")
        assert "tools" not in fake_llm.calls[-1]
        async with mcp_server(port):
            fake_llm.reply = _calling(ToolCall("calc_add", {"a": 1, "b": 1}))

            async def listed() -> bool:
                turn = await answered(client, alice, session_id, "now?")
                steps = turn["assistant_message"]["metadata"]["steps"]
                return bool(steps[0]["output"] == "2")  # not "calc_add is not a valid tool"

            await eventually(listed)
        # the server dropped: the call fails as a step, the turn is answered
        dropped = (await answered(client, alice, session_id, "again?"))["assistant_message"]
        (step,) = dropped["metadata"]["steps"]
        assert step["error"]
        assert dropped["content"].startswith("got Error: ")
        async with mcp_server(port):  # back: reached again at the next call
            back = (await answered(client, alice, session_id, "back?"))["assistant_message"]
    (step,) = back["metadata"]["steps"]
    assert (step["output"], step.get("error")) == ("2", None)


def test_mcp_servers_are_read_as_json_or_from_a_file(tmp_path: Path) -> None:
    servers = {
        "web": {"transport": "streamable_http", "url": "http://h/mcp", "headers": {"X": "1"}},
        "local": {"transport": "stdio", "command": "python", "args": ["server.py"]},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(servers))
    for given in (json.dumps(servers), f"@{path}"):
        settings = load_settings(mcp_servers=given)
        assert settings.mcp_servers["web"].connection() == {
            "transport": "streamable_http",
            "url": "http://h/mcp",
            "headers": {"X": "1"},
        }
        assert settings.mcp_servers["local"].connection()["args"] == ["server.py"]
    for bad, said in (
        ("{not json", "MCP_SERVERS"),
        (f"@{tmp_path / 'missing.json'}", "cannot read"),
        ('{"x": {"transport": "websocket", "url": "ws://h"}}', "MCP_SERVERS"),
        ('{"x": {"transport": "stdio"}}', "MCP_SERVERS"),
    ):
        with pytest.raises(ConfigError, match=said):
            load_settings(mcp_servers=bad)
    with pytest.raises(ConfigError, match="AGENT_TOOL_TIMEOUT_SECONDS must be less than"):
        load_settings(
            agent_grounding="tools", agent_tool_timeout_seconds=60, llm_timeout_seconds=60
        )
    assert load_settings(agent_tool_timeout_seconds=60, llm_timeout_seconds=60)  # no tools


STDIO_SERVER = '''
from mcp.server.fastmcp import FastMCP

server = FastMCP("local", log_level="WARNING")


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


server.run("stdio")
'''


async def test_a_stdio_server_s_tools(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers, tmp_path: Path
) -> None:
    """A server the service starts as a process (stdio transport)."""
    script = tmp_path / "local_server.py"
    script.write_text(STDIO_SERVER)
    servers = {"local": {"transport": "stdio", "command": sys.executable, "args": [str(script)]}}
    settings = llm_settings(
        agent_grounding="tools", agent_tool_timeout_seconds=5, mcp_servers=json.dumps(servers)
    )
    fake_llm.reply = _calling(ToolCall("local_shout", {"text": "quiet"}))
    async with serve_app(settings) as client:
        session_id = await new_session(client, alice)
        turn = await answered(client, alice, session_id, "shout it")
    (step,) = turn["assistant_message"]["metadata"]["steps"]
    assert (step["tool"], step["output"]) == ("local_shout", "QUIET")
