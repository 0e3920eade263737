"""Agents from the stored history: built for a new session, rebuilt for a released one from
the newest messages of its active branch that the token budget holds, and caught up with what
others wrote (or rebuilt on the branch a turn answers on)."""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.agents.agent import ChatAgent, message_tokens, system_prompt_for, to_message
from session_service.agents.pool import AgentPool
from session_service.config import Settings
from session_service.db.contention import retry_lost_connection
from session_service.db.models import ChatMessage, ChatSession, MessageStatus
from session_service.db.tree import Text, TreeRepository

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

    async def pooled(
        self, row: ChatSession, db: AsyncSession | None = None, *, leaf_id: int | None = None
    ) -> ChatAgent:
        """The session's agent from the pool, rebuilt into it if it is not there: on the
        branch ending at `leaf_id` (a turn's question), or else on the active branch."""
        leaf = row.active_message_id if leaf_id is None else leaf_id
        return await self.pool.get_or_rebuild(row.session_id, lambda: self.rebuild(row, leaf, db))

    async def rebuild(
        self, row: ChatSession, leaf_id: int | None, db: AsyncSession | None = None
    ) -> ChatAgent:
        """A session's agent on the branch ending at `leaf_id`, from its newest messages that
        fit the token budget, reading with the caller's database session `db` if it has one.

        A reply still being generated is left out: its turn adds it when it is stored.
        """
        if db is None:

            async def read() -> ChatAgent:
                async with self.session_factory() as own:
                    return await self.rebuild(row, leaf_id, own)

            return await retry_lost_connection(read, "rebuilding an agent")
        agent = self.new_agent(row)
        budget = self.settings.agent_history_max_tokens
        collected: list[tuple[int, BaseMessage, int]] = []  # newest first
        tokens = 0
        tree = TreeRepository.from_session(db)
        while leaf_id is not None and tokens < budget:
            page = await tree.branch_texts(row.session_id, leaf_id, limit=PAGE)
            for message_id, _parent, role, content, status in page:
                if status == MessageStatus.STREAMING:
                    continue
                message = to_message(role, content)
                counted = message_tokens(message)
                collected.append((message_id, message, counted))
                tokens += counted
                if tokens >= budget:
                    break
            leaf_id = page[-1][1] if len(page) == PAGE else None  # the oldest's parent
        for message_id, message, counted in reversed(collected):
            agent.append(message_id, message, tokens=counted)
        return agent

    async def caught_up(self, agent: ChatAgent, row: ChatSession, last: ChatMessage) -> ChatAgent:
        """The agent holding the branch that ends at `last` (the question to answer): each of
        its messages once, in order, and nothing of another branch.

        Another replica (or a turn that failed after storing its question) may have written
        messages this agent has not seen, or the session may have switched branch: the
        messages between what the agent holds and `last` are read and added when there are a
        few, and otherwise the agent is rebuilt, which reads only what the token budget holds.
        A session deleted and re-created under the same id makes the agent a stranger, so it
        is rebuilt too.
        """
        assert last.id is not None
        agent.system_prompt = self._system_prompt(row)  # the context may have been patched
        if agent.session_created_at == row.created_at:
            if agent.leaf_id == last.id:
                return agent
            if agent.leaf_id == last.parent_id:
                agent.append(last.id, to_message(last.role, last.content))
                return agent
            missing = await self._since(agent, row, last)
            if missing is not None:
                agent.extend(missing)
                return agent
        rebuilt = await self.rebuild(row, last.id)
        self.pool.replace(rebuilt)
        return rebuilt

    async def _since(
        self, agent: ChatAgent, row: ChatSession, last: ChatMessage
    ) -> list[tuple[int, BaseMessage]] | None:
        """The messages of `last`'s branch after the agent's leaf, oldest first; None if the
        leaf is not among its newest PAGE (another branch, or too far behind)."""
        assert last.id is not None
        if agent.leaf_id is None or agent.leaf_id > last.id:
            return None

        async def read() -> list[Text]:
            assert last.id is not None
            async with self.session_factory() as db:
                tree = TreeRepository.from_session(db)
                return await tree.branch_texts(row.session_id, last.id, limit=PAGE)

        page = await retry_lost_connection(read, "catching an agent up")
        missing: list[tuple[int, BaseMessage]] = []
        for message_id, _parent, role, content, _status in page:
            if message_id == agent.leaf_id:
                return missing[::-1]
            missing.append((message_id, to_message(role, content)))
        return None

    def _system_prompt(self, row: ChatSession) -> str:
        return system_prompt_for(self.settings.agent_system_prompt, row.context)
