"""A chat turn, in order (api.md): authorise, lock, store the question, agent, generate, store.

The one place that knows that order. Each database step is its own short transaction, so no
connection is held while the LLM generates; the turn lock keeps one turn per session at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.agents.agent import ChatAgent, message_tokens, system_prompt_for, to_message
from session_service.agents.pool import AgentPool
from session_service.auth import User
from session_service.chat.grounding import ground
from session_service.chat.mirror import Mirror
from session_service.chat.sessions import owned_session
from session_service.config import Settings
from session_service.db.models import ChatMessage, ChatSession
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.turn_lock import TurnLocks
from session_service.db.types import utcnow
from session_service.errors import Conflict, ServiceError, SessionNotFound
from session_service.llm.errors import llm_error

log = logging.getLogger(__name__)

RESTORE_PAGE = 200


@dataclass(frozen=True, slots=True)
class TurnResult:
    user_message: ChatMessage
    assistant_message: ChatMessage
    created: bool  # False: a repeated client_message_id answered from the database


class ChatTurns:
    """Runs turns and builds agents; one per process, made in the lifespan."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        pool: AgentPool,
        locks: TurnLocks,
        llm: BaseChatModel,
        mirror: Mirror | None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.pool = pool
        self.locks = locks
        self.llm = llm
        self.mirror = mirror

    async def run(
        self,
        user: User,
        session_id: str,
        content: str,
        *,
        client_message_id: str | None = None,
        if_busy: Literal["wait", "reject"] = "wait",
    ) -> TurnResult:
        async with self.session_factory() as db:
            row = await owned_session(db, session_id, user)
            if client_message_id is not None:
                answered = await self._answered(db, session_id, client_message_id)
                if answered is not None:
                    return answered
            del row
        async with self.locks.hold(
            session_id,
            wait_seconds=self.settings.turn_lock_timeout_seconds,
            wait=if_busy == "wait",
        ):
            try:
                async with self.session_factory() as db, db.begin():
                    row = await owned_session(db, session_id, user)
                    if client_message_id is not None:
                        answered = await self._answered(db, session_id, client_message_id)
                        if answered is not None:
                            return answered
                    question = await self._store_question(db, row, content, client_message_id)
            except IntegrityError as exc:
                raise await self._changed_under_us(session_id) from exc
            agent = await self._agent_for(row)
            async with self.pool.lease(agent):
                agent = await self._caught_up(agent, row, question)
                grounded = await ground(self.mirror, row, question.content)
                answer = await self._generate(agent, grounded.text)
                try:
                    async with self.session_factory() as db, db.begin():
                        reply = await self._store(
                            db,
                            row.session_id,
                            question.seq + 1,
                            "assistant",
                            answer.text,
                            meta=_answer_metadata(answer) | grounded.metadata,
                        )
                except IntegrityError as exc:
                    raise await self._changed_under_us(session_id) from exc
                agent.append(reply.seq, AIMessage(content=reply.content))
        return TurnResult(question, reply, created=True)

    async def restore(self, row: ChatSession) -> ChatAgent:
        """Rebuild a session's agent from the newest stored messages that fit the token budget."""
        agent = self.new_agent(row)
        budget = self.settings.agent_history_max_tokens
        collected: list[ChatMessage] = []
        tokens = 0
        before: int | None = None
        async with self.session_factory() as db:
            messages = MessageRepository.from_session(db)
            while tokens < budget:
                page, has_more = await messages.latest(
                    row.session_id, limit=RESTORE_PAGE, before_seq=before
                )
                for message in reversed(page):
                    collected.append(message)
                    tokens += message_tokens(to_message(message.role, message.content))
                    if tokens >= budget:
                        break
                if not has_more or not page:
                    break
                before = page[0].seq
        agent.extend((m.seq, to_message(m.role, m.content)) for m in reversed(collected))
        return agent

    def new_agent(self, row: ChatSession) -> ChatAgent:
        return ChatAgent(
            session_id=row.session_id,
            user_id=row.user_id,
            session_created_at=row.created_at,
            system_prompt=self._system_prompt(row),
            token_budget=self.settings.agent_history_max_tokens,
        )

    def _system_prompt(self, row: ChatSession) -> str:
        return system_prompt_for(self.settings.agent_system_prompt, row.context)

    async def _agent_for(self, row: ChatSession) -> ChatAgent:
        return await self.pool.get_or_restore(row.session_id, lambda: self.restore(row))

    async def _caught_up(
        self, agent: ChatAgent, row: ChatSession, question: ChatMessage
    ) -> ChatAgent:
        """The agent with every stored message up to the question, in order, each once.

        Another replica (or a turn that failed after storing its question) may have written
        messages this agent has not seen; a session deleted and re-created under the same id
        makes the agent a stranger, so it is rebuilt.
        """
        if agent.session_created_at != row.created_at or agent.last_seq > question.seq:
            rebuilt = await self.restore(row)
            self.pool.replace(rebuilt)
            return rebuilt
        agent.system_prompt = self._system_prompt(row)  # the context may have been patched
        if agent.last_seq == question.seq - 1:
            agent.append(question.seq, to_message("user", question.content))
        elif agent.last_seq < question.seq:
            async with self.session_factory() as db:
                missing = await MessageRepository.from_session(db).after(
                    row.session_id, agent.last_seq
                )
            agent.extend(
                (m.seq, to_message(m.role, m.content)) for m in missing if m.seq <= question.seq
            )
        return agent

    async def _generate(self, agent: ChatAgent, grounding: str | None) -> AIMessage:
        try:
            async with asyncio.timeout(self.settings.llm_timeout_seconds):
                return await agent.reply(self.llm, grounding)
        except Exception as exc:
            error = llm_error(exc)
            log.warning(
                "turn failed session_id=%s status=%d reason=%r",
                agent.session_id,
                error.status_code,
                exc,
            )
            raise error from exc

    async def _changed_under_us(self, session_id: str) -> ServiceError:
        """Why a write of this turn hit a constraint: the session was deleted, or written to."""
        async with self.session_factory() as db:
            gone = await SessionRepository.from_session(db).get(session_id) is None
        if gone:
            return SessionNotFound()
        return Conflict("the session changed during this turn; nothing more was stored")

    async def _answered(
        self, db: AsyncSession, session_id: str, client_message_id: str
    ) -> TurnResult | None:
        """The stored pair for a repeated client_message_id, if its answer is stored."""
        messages = MessageRepository.from_session(db)
        question = await messages.by_client_id(session_id, client_message_id)
        if question is None:
            return None
        reply = await messages.at_seq(session_id, question.seq + 1)
        if reply is None or reply.role != "assistant":
            return None
        return TurnResult(question, reply, created=False)

    async def _store_question(
        self, db: AsyncSession, row: ChatSession, content: str, client_message_id: str | None
    ) -> ChatMessage:
        """Store the user's message; a retried client_message_id whose turn failed is reused."""
        if client_message_id is not None:
            earlier = await MessageRepository.from_session(db).by_client_id(
                row.session_id, client_message_id
            )
            if earlier is not None:
                if earlier.seq != row.message_count:
                    raise Conflict(
                        "client_message_id was used for an earlier message that is no longer "
                        "the latest; send the message again with a new client_message_id"
                    )
                return earlier
        return await self._store(
            db,
            row.session_id,
            row.message_count + 1,
            "user",
            content,
            client_message_id=client_message_id,
        )

    async def _store(
        self,
        db: AsyncSession,
        session_id: str,
        seq: int,
        role: str,
        content: str,
        *,
        client_message_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> ChatMessage:
        now = utcnow()
        message = await MessageRepository.from_session(db).insert(
            ChatMessage(
                session_id=session_id,
                seq=seq,
                role=role,
                content=content,
                timestamp=now,
                client_message_id=client_message_id,
                meta=meta or {},
            )
        )
        await SessionRepository.from_session(db).record_messages(session_id, 1, now)
        return message


def _answer_metadata(answer: AIMessage) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    model = answer.response_metadata.get("model_name") or answer.response_metadata.get("model")
    if model:
        meta["model"] = model
    if answer.usage_metadata:
        usage = answer.usage_metadata
        meta["usage"] = {
            "input_tokens": usage["input_tokens"],
            "output_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        }
    return meta
