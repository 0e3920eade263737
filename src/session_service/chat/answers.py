"""Steps 5 to 7 of a turn, as AGENT_GROUNDING says: RAGFlow asked first and then the LLM
(`always`), the LLM alone (`off`), or the LLM calling RAGFlow as tools (`tools`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk

from session_service import metrics
from session_service.agents.agent import ChatAgent
from session_service.chat.generation import Generation
from session_service.chat.grounding import ground
from session_service.chat.mcp_tools import McpTools
from session_service.chat.mirror import Mirror
from session_service.chat.tool_agent import ToolAgent
from session_service.chat.tools import TurnContext, ragflow_tools
from session_service.config import Settings
from session_service.db.models import ChatMessage, ChatSession
from session_service.metrics import Phase


class Answers:
    def __init__(
        self, settings: Settings, llm: BaseChatModel, mirror: Mirror | None, mcp: McpTools | None
    ) -> None:
        self.llm = llm
        self.mirror = mirror
        self.grounding = None if settings.agent_grounding == "off" else mirror
        self.mcp = mcp
        self.tool_agent = None
        if settings.agent_grounding == "tools":
            self.tool_agent = ToolAgent(
                llm, settings.agent_max_steps, settings.agent_tool_timeout_seconds
            )

    async def pieces(
        self,
        agent: ChatAgent,
        row: ChatSession,
        question: ChatMessage,
        generation: Generation,
        meta: dict[str, Any],
        stream: bool,
    ) -> AsyncGenerator[AIMessageChunk]:
        """The answer's pieces; what the reply's metadata gains on the way, into `meta`."""
        if self.tool_agent is not None:
            tools = ragflow_tools(self.mirror) + (self.mcp.tools if self.mcp else [])
            context = TurnContext(row, self.mirror)
            return self.tool_agent.reply(tools, agent.prompt(), context, meta, generation.publish)
        with metrics.timed_phase(Phase.GROUNDING):
            grounded = await ground(self.grounding, row, question.content)
        meta |= grounded.metadata
        return agent.reply(self.llm, grounded.text, stream=stream)
