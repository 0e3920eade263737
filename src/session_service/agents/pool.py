"""The agent pool: at most `max_size` agents, least recently used first out, idle ones swept.

Agents sit in an OrderedDict in order of last use (touching moves one to the end), so the
least recently used is always first: eviction and the idle sweep look only at the front and
stop at the first agent still fresh — cost proportional to what they release, not the pool.
Agents in use by a running turn are skipped by both. Releasing never touches the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from session_service import metrics
from session_service.agents.agent import ChatAgent
from session_service.metrics import ReleaseReason

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentInfo:
    session_id: str
    user_id: str
    idle_seconds: float
    last_used_at: datetime


class AgentPool:
    def __init__(self, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_size = max_size
        self._clock = clock
        self._agents: OrderedDict[str, ChatAgent] = OrderedDict()
        self._in_use: dict[str, int] = {}  # sessions with a running turn, and how many
        self._rebuilding: dict[str, asyncio.Future[ChatAgent]] = {}
        self.created_total = 0
        self.restores_total = 0
        self.evictions_total = 0
        self.released_total: Counter[ReleaseReason] = Counter()
        metrics.AGENTS_MAX.set(max_size)
        metrics.AGENTS_ACTIVE.set(0)

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._agents

    def get(self, session_id: str) -> ChatAgent | None:
        agent = self._agents.get(session_id)
        if agent is not None:
            self._touch(agent)
        return agent

    def add(self, agent: ChatAgent) -> None:
        """Hold a new session's agent (replacing any stale one for that id)."""
        self._put(agent)
        self.created_total += 1
        metrics.AGENTS_CREATED.inc()
        log.info("agent created session_id=%s pool=%d", agent.session_id, len(self._agents))

    async def get_or_rebuild(
        self, session_id: str, rebuild: Callable[[], Awaitable[ChatAgent]]
    ) -> ChatAgent:
        """The live agent, or one made by `rebuild`; concurrent callers share one rebuild
        (if the caller making it goes away, one of the others makes its own). A rebuild is
        what the metrics and the admin status call a restore."""
        while True:
            agent = self.get(session_id)
            if agent is not None:
                return agent
            pending = self._rebuilding.get(session_id)
            if pending is None:
                return await self._rebuild(session_id, rebuild)
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # this caller is the one cancelled

    async def _rebuild(
        self, session_id: str, rebuild: Callable[[], Awaitable[ChatAgent]]
    ) -> ChatAgent:
        future: asyncio.Future[ChatAgent] = asyncio.get_running_loop().create_future()
        self._rebuilding[session_id] = future
        try:
            agent = await rebuild()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            log.warning("agent restore failed session_id=%s reason=%r", session_id, exc)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._rebuilding[session_id]
        self._put(agent)
        self.restores_total += 1
        metrics.AGENTS_RESTORED.inc()
        log.info(
            "agent restored session_id=%s messages=%d pool=%d",
            session_id,
            agent.message_count,
            len(self._agents),
        )
        future.set_result(agent)
        return agent

    def replace(self, agent: ChatAgent) -> None:
        """Swap in a rebuilt agent for a session whose history changed under the old one."""
        self._put(agent)

    def release(self, session_id: str, *, reason: ReleaseReason = ReleaseReason.MANUAL) -> bool:
        """Release one agent (e.g. `reason=ReleaseReason.DELETED` with its session)."""
        agent = self._agents.pop(session_id, None)
        if agent is None:
            return False
        self._released(reason, 1)
        log.info("agent released session_id=%s reason=%s pool=%d", session_id, reason, len(self))
        return True

    def release_idle(
        self, max_age: float, *, reason: ReleaseReason = ReleaseReason.IDLE
    ) -> list[str]:
        """Release agents idle at least `max_age` seconds (not those in use); their ids.
        `reason` says who asked: the background sweep (idle) or an admin (manual)."""
        now = self._clock()
        expired = []
        for session_id, agent in self._agents.items():  # least recently used first
            if now - agent.last_used < max_age:
                break
            if session_id not in self._in_use:
                expired.append(session_id)
        for session_id in expired:
            del self._agents[session_id]
        self._released(reason, len(expired))
        return expired

    @contextmanager
    def in_use(self, session_id: str) -> Iterator[None]:
        """Mark the session's agent in use for the length of a turn: no sweep or eviction
        takes it, nor the agent that replaces it if the turn rebuilds it."""
        self._in_use[session_id] = self._in_use.get(session_id, 0) + 1
        self.get(session_id)  # touch
        try:
            yield
        finally:
            self._in_use[session_id] -= 1
            if not self._in_use[session_id]:
                del self._in_use[session_id]
            self.get(session_id)  # touch

    def snapshot(self, limit: int) -> list[AgentInfo]:
        """The `limit` most idle agents, most idle first."""
        now, wall = self._clock(), time.time()
        infos: list[AgentInfo] = []
        for agent in self._agents.values():
            if len(infos) >= limit:
                break
            idle = max(0.0, now - agent.last_used)
            last_used_at = datetime.fromtimestamp(wall - idle, UTC)
            infos.append(AgentInfo(agent.session_id, agent.user_id, idle, last_used_at))
        return infos

    def _released(self, reason: ReleaseReason, count: int) -> None:
        self.released_total[reason] += count
        metrics.AGENTS_RELEASED.labels(reason).inc(count)
        metrics.AGENTS_ACTIVE.set(len(self._agents))

    def _touch(self, agent: ChatAgent) -> None:
        agent.last_used = self._clock()
        if self._agents.get(agent.session_id) is agent:
            self._agents.move_to_end(agent.session_id)

    def _put(self, agent: ChatAgent) -> None:
        agent.last_used = self._clock()
        self._agents[agent.session_id] = agent
        self._agents.move_to_end(agent.session_id)
        self._evict_over_capacity()
        metrics.AGENTS_ACTIVE.set(len(self._agents))

    def _evict_over_capacity(self) -> None:
        while len(self._agents) > self.max_size:
            victim = next((key for key in self._agents if key not in self._in_use), None)
            if victim is None:
                return  # every agent is in a running turn: overflow until one finishes
            del self._agents[victim]
            self.evictions_total += 1
            metrics.AGENTS_EVICTED.inc()
            log.info("agent evicted session_id=%s reason=lru pool=%d", victim, len(self))
