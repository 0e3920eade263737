"""The tools a turn's agent may call (AGENT_GROUNDING=tools): RAGFlow's retrieval over the
configured datasets, and the session's RAGFlow conversation. One set per process; the session
a call is for comes with the call (`TurnContext`), never seen by the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain.tools import ToolRuntime, tool
from langchain_core.tools import BaseTool

from session_service.chat.grounding import ask_mirror
from session_service.chat.mirror import Mirror
from session_service.db.models import ChatSession
from session_service.ragflow.models import Grounding


@dataclass(frozen=True, slots=True)
class TurnContext:
    row: ChatSession
    mirror: Mirror | None


def ragflow_tools(mirror: Mirror | None) -> list[BaseTool]:
    """What RAGFlow offers the agent, as configured: retrieval when datasets are set, and the
    session's RAGFlow conversation whenever RAGFlow is on."""
    if mirror is None:
        return []
    if mirror.ragflow.dataset_ids:
        return [search_knowledge_base, ask_knowledge_base]
    return [ask_knowledge_base]


@tool(response_format="content_and_artifact")
async def search_knowledge_base(
    query: str, runtime: ToolRuntime[TurnContext]
) -> tuple[str, dict[str, Any]]:
    """Search the knowledge base's documents for passages relevant to `query` (a few words or
    a question). Returns the passages with their sources."""
    mirror = _mirror(runtime)
    return _found(await mirror.ragflow.retrieve(query))


@tool(response_format="content_and_artifact")
async def ask_knowledge_base(
    question: str, runtime: ToolRuntime[TurnContext]
) -> tuple[str, dict[str, Any]]:
    """Ask the knowledge base's assistant a question; it answers from its documents, with
    the passages it used."""
    mirror, row = _mirror(runtime), runtime.context.row
    return _found(await ask_mirror(mirror, row, question, await mirror.ensure(row)))


def _mirror(runtime: ToolRuntime[TurnContext]) -> Mirror:
    mirror = runtime.context.mirror
    if mirror is None:
        raise RuntimeError("the knowledge base is not configured")
    return mirror


def _found(grounding: Grounding) -> tuple[str, dict[str, Any]]:
    """The text the model reads, and the references (the step's, chat/tool_agent.py)."""
    text = grounding.text or "Nothing relevant was found."
    return text, {"references": [reference.public() for reference in grounding.references]}
