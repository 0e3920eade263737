"""Automatic titles: a session created without a title is titled from its first question by
the shared LLM, in a task of its own beside the reply (it neither delays the answer nor holds
the turn lock). The title is stored only while the session still waits for one (a title the
user set is never replaced), audited, sent as a `title` event if the reply is still streaming,
and given to the RAGFlow mirror. A failed attempt leaves the session waiting: its next turn
tries again."""

from __future__ import annotations

import asyncio
import logging
import re

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.chat.generation import TITLE, Generation
from session_service.chat.mirror import Mirror
from session_service.db.audit_log import AuditRepository
from session_service.db.models import ChatSession
from session_service.db.repositories import SessionRepository
from session_service.llm.prompts import TITLE_PROMPT

log = logging.getLogger(__name__)

TITLE_CHARS = 80
# Quotes, and final punctuation, in Latin, CJK (full-width) and other common forms.
QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u300c\u300d\u300e\u300f\u300a\u300b"
_TRAILING = re.compile("[\\s.!?:;,\u3002\uff01\uff1f\uff1a\uff1b\uff0c\u3001\u2026]+$")
_LABEL = re.compile("^\\s*title\\s*[:\uff1a]\\s*", re.IGNORECASE)


def cleaned(text: str) -> str:
    """A title from what the LLM said: one line, no label, quotes or final punctuation, at
    most TITLE_CHARS characters (cut at a word where there are words)."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    title = _LABEL.sub("", " ".join(line.split())).strip(QUOTES + " ")
    if len(title) > TITLE_CHARS:
        cut = title[:TITLE_CHARS]
        title = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return _TRAILING.sub("", title).strip(QUOTES + " ")


class Titles:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        llm: BaseChatModel,
        mirror: Mirror | None,
        timeout_seconds: float,
    ) -> None:
        self.session_factory = session_factory
        self.llm = llm
        self.mirror = mirror
        self.timeout_seconds = timeout_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, row: ChatSession, question: str, generation: Generation) -> None:
        """Title `row` from `question` in a task of its own."""
        task = asyncio.create_task(self._title(row, question, generation), name="title")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _title(self, row: ChatSession, question: str, generation: Generation) -> None:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                said = await self.llm.ainvoke([SystemMessage(TITLE_PROMPT), HumanMessage(question)])
            title = cleaned(said.text)
            if not title:
                return
            async with self.session_factory() as db, db.begin():
                if not await SessionRepository.from_session(db).title(row.session_id, title):
                    return  # titled meanwhile, by the user or another turn
                await AuditRepository.from_session(db).record(
                    row.user_id,
                    "session.titled",
                    session_id=row.session_id,
                    user_id=row.user_id,
                    detail={"title": title},
                )
        except Exception as exc:  # the next turn tries again
            log.warning("session not titled session_id=%s reason=%r", row.session_id, exc)
            return
        log.info("session titled session_id=%s", row.session_id)
        if generation.result is None and generation.error is None:
            generation.publish(TITLE, {"title": title})  # before message_end
        if self.mirror is not None:
            row.title = title
            await self.mirror.rename(row)
