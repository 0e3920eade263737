"""Agents from the stored history: built for a new session, rebuilt for a released one from
the newest messages the token budget holds, and caught up with what others wrote."""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.agents.agent import ChatAgent, message_tokens, system_prompt_for, to_message
from session_service.agents.pool import AgentPool
from session_service.config import Settings
from session_service.db.models import ChatMessage, ChatSession, MessageStatus
from session_service.db.repositories import MessageRepository

PAGE = 200  # rows read at a time when rebuilding; an agent further behind is rebuilt


class Histories:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        pool: AgentPool,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.pool = pool

    def add(self, row: ChatSession) -> None:
        """A new session's agent, pooled at once (its first turn needs no rebuild)."""
        self.pool.add(self.new_agent(row))

    def has(self, session_id: str) -> bool:
        return session_id in self.pool

    def new_agent(self, row: ChatSession) -> ChatAgent:
        return ChatAgent(
            session_id=row.session_id,
            user_id=row.user_id,
            session_created_at=row.created_at,
            system_prompt=self._system_prompt(row),
            token_budget=self.settings.agent_history_max_tokens,
        )

    async def pooled(self, row: ChatSession, db: AsyncSession | None = None) -> ChatAgent:
        """The session's agent from the pool, rebuilt into it if it is not there."""
        return await self.pool.get_or_rebuild(row.session_id, lambda: self.rebuild(row, db))

    async def rebuild(self, row: ChatSession, db: AsyncSession | None = None) -> ChatAgent:
        """A session's agent from the newest stored messages that fit the token budget,
        reading with the caller's database session `db` if it has one open.

        A reply still being generated is left out: its turn adds it when it is stored.
        """
        if db is None:
            async with self.session_factory() as own:
                return await self.rebuild(row, own)
        agent = self.new_agent(row)
        budget = self.settings.agent_history_max_tokens
        collected: list[tuple[int, BaseMessage, int]] = []  # newest first
        tokens = 0
        before: int | None = None
        messages = MessageRepository.from_session(db)
        while tokens < budget:
            page = await messages.newest_texts(row.session_id, limit=PAGE, before_seq=before)
            for seq, role, content, status in page:
                if status == MessageStatus.STREAMING:
                    continue
                message = to_message(role, content)
                counted = message_tokens(message)
                collected.append((seq, message, counted))
                tokens += counted
                if tokens >= budget:
                    break
            if len(page) < PAGE:
                break
            before = page[-1][0]
        for seq, message, counted in reversed(collected):
            agent.append(seq, message, tokens=counted)
        return agent

    async def caught_up(
        self, agent: ChatAgent, row: ChatSession, question: ChatMessage
    ) -> ChatAgent:
        """The agent with every stored message up to the question, in order, each once.

        Another replica (or a turn that failed after storing its question) may have written
        messages this agent has not seen: a few are read and added, but an agent far behind is
        rebuilt, which reads only what the token budget holds. A session deleted and re-created
        under the same id makes the agent a stranger, so it is rebuilt too.
        """
        stranger = agent.session_created_at != row.created_at or agent.last_seq > question.seq
        if stranger or question.seq - agent.last_seq > PAGE:
            rebuilt = await self.rebuild(row)
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

    def _system_prompt(self, row: ChatSession) -> str:
        return system_prompt_for(self.settings.agent_system_prompt, row.context)
