"""A real MCP server (the `mcp` package's FastMCP) over streamable HTTP, on a loopback port,
in the test's event loop: `calc`, with tools that add, answer a megabyte, or take their time.
Stopped and started again on the same port, it is a server that dropped and came back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.fastmcp import FastMCP

from tests.sse import served

BIG = 1_000_000  # characters `big` answers


def _calc() -> FastMCP:
    """A new server each time: a FastMCP's session manager runs once."""
    server = FastMCP("calc", stateless_http=True, json_response=True, log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def big() -> str:
        """A long text."""
        return "x" * BIG

    @server.tool()
    async def slow(seconds: float) -> str:
        """Answer after `seconds`."""
        await asyncio.sleep(seconds)
        return "done"

    return server


@asynccontextmanager
async def mcp_server(port: int = 0) -> AsyncIterator[tuple[str, int]]:
    """The server running until the block ends: (its URL, its port)."""
    async with served(_calc().streamable_http_app(), port) as bound:
        yield f"http://127.0.0.1:{bound}/mcp", bound
