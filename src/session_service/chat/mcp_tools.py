"""The tools of the MCP servers in MCP_SERVERS (AGENT_GROUNDING=tools), through
langchain-mcp-adapters, named `<server>_<tool>`.

Each server's tools are listed once it answers: at start, and again every
MCP_RETRY_SECONDS for a server that did not (a lifespan task), so a server down at start
never stops the service (start waits at most LIST_TIMEOUT_SECONDS for one), and its tools
appear when it comes up. Each call opens its own
session with the server, so a server that dropped is reached again at the next call; a call
that fails is an error step the model answers around (chat/tool_agent.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient

from session_service.chat.tool_agent import described
from session_service.config import McpServer

log = logging.getLogger(__name__)

MCP_RETRY_SECONDS = 30.0
LIST_TIMEOUT_SECONDS = 5.0  # listing one server's tools


class McpTools:
    def __init__(self, servers: dict[str, McpServer]) -> None:
        connections: dict[str, Any] = {name: s.connection() for name, s in servers.items()}
        self.client = MultiServerMCPClient(connections, tool_name_prefix=True)
        self.names = list(servers)
        self.listed: dict[str, list[BaseTool]] = {}

    @property
    def tools(self) -> list[BaseTool]:
        """The tools of the servers listed so far, in MCP_SERVERS' order."""
        return [tool for name in self.names for tool in self.listed.get(name, [])]

    async def list_missing(self) -> int:
        """List the tools of the servers not listed yet; how many are still missing."""
        for name in self.names:
            if name in self.listed:
                continue
            try:
                async with asyncio.timeout(LIST_TIMEOUT_SECONDS):
                    self.listed[name] = await self.client.get_tools(server_name=name)
            except Exception as exc:  # down, or not speaking MCP: tried again later
                log.warning("MCP server %s unavailable: %s", name, described(exc))
                continue
            log.info("MCP server %s: %d tools", name, len(self.listed[name]))
        return len(self.names) - len(self.listed)
