"""Step 5 of a turn: knowledge from RAGFlow for the LLM, or the turn goes on without it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from session_service.chat.mirror import Mirror
from session_service.db.models import ChatSession
from session_service.ragflow.errors import (
    RagflowError,
    RagflowNotFound,
    RagflowUnavailable,
    misconfigured,
)
from session_service.ragflow.models import Grounding

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Grounded:
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # for the assistant message


UNGROUNDED = Grounded()


async def ground(mirror: Mirror | None, row: ChatSession, question: str) -> Grounded:
    """Retrieval over the configured datasets, or else the session's RAGFlow conversation.

    Any RAGFlow failure is logged and the turn answers from the LLM alone, marked
    `grounding: "unavailable"`: the user still gets an answer.
    """
    if mirror is None:
        return UNGROUNDED
    try:
        grounding = await _ask(mirror, row, question)
    except RagflowError as exc:
        # What an operator must fix (wrong key or chat, a RAGFlow that lacks the route or
        # cannot serve it) is an error in the log; an outage a warning: both leave the turn
        # answered from the LLM alone.
        level = logging.ERROR if misconfigured(exc) else logging.WARNING
        log.log(level, "grounding unavailable session_id=%s reason=%s", row.session_id, exc)
        return Grounded(metadata={"grounding": "unavailable"})
    return Grounded(
        text=grounding.text or None,
        metadata={
            "grounding": grounding.source,
            "references": [reference.public() for reference in grounding.references],
        },
    )


async def _ask(mirror: Mirror, row: ChatSession, question: str) -> Grounding:
    mirror_id = await mirror.ensure(row)
    if mirror.ragflow.dataset_ids:
        return await mirror.ragflow.retrieve(question)
    return await ask_mirror(mirror, row, question, mirror_id)


async def ask_mirror(
    mirror: Mirror, row: ChatSession, question: str, mirror_id: str | None
) -> Grounding:
    """The session's RAGFlow conversation (`mirror_id`, as `Mirror.ensure` gave it) answers."""
    ragflow = mirror.ragflow
    if mirror_id is None:
        raise RagflowUnavailable("no RAGFlow session to ask")
    try:
        return await ragflow.ask(mirror_id, question, row.user_id)
    except RagflowNotFound:
        # Someone deleted the mirror on RAGFlow's side: make a new one and ask again.
        mirror_id = await mirror.ensure(row, replacing=mirror_id)
        if mirror_id is None:
            raise
        return await ragflow.ask(mirror_id, question, row.user_id)
