"""Each session's mirror in RAGFlow: created with it (or at its first turn), renamed with it,
and deleted with it — through a table of pending deletions retried until RAGFlow confirms."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.background import Repeating
from session_service.db.models import ChatSession
from session_service.db.repositories import RagflowDeletionRepository, SessionRepository
from session_service.db.types import utcnow
from session_service.ragflow.client import RagflowClient, RagflowError

log = logging.getLogger(__name__)

DELETIONS_PER_ROUND = 100
MAX_BACKOFF = timedelta(minutes=10)


class Mirror:
    def __init__(
        self,
        ragflow: RagflowClient,
        session_factory: async_sessionmaker[AsyncSession],
        retry_interval: float,
    ) -> None:
        self.ragflow = ragflow
        self._session_factory = session_factory
        self._retry_interval = retry_interval
        self.deletions = Repeating(
            "ragflow-deletions", self.delete_pending, interval=retry_interval, run_at_start=True
        )

    async def create(self, title: str, user_id: str) -> str | None:
        """A new RAGFlow session, or None if RAGFlow cannot make one now (made at a turn)."""
        try:
            return await self.ragflow.create_session(title, user_id)
        except RagflowError as exc:
            log.warning("ragflow session not created (retried at the first turn): %s", exc)
            return None

    async def ensure(self, row: ChatSession, *, replacing: str | None = None) -> str | None:
        """The session's mirror id, creating it (or replacing a lost one) if need be."""
        if row.ragflow_session_id and row.ragflow_session_id != replacing:
            return row.ragflow_session_id
        mirror_id = await self.create(row.title, row.user_id)
        if mirror_id is None:
            return None
        async with self._session_factory() as db, db.begin():
            stored = await SessionRepository.from_session(db).set_mirror(
                row.session_id, mirror_id, replacing=replacing
            )
            if not stored:  # the session is gone, or got a mirror meanwhile: ours is spare
                await RagflowDeletionRepository.from_session(db).add(
                    mirror_id, self.ragflow.chat_id
                )
        if not stored:
            self.wake()
            return None
        log.info(
            "ragflow session mirrored session_id=%s ragflow_session_id=%s",
            row.session_id,
            mirror_id,
        )
        row.ragflow_session_id = mirror_id
        return mirror_id

    async def rename(self, row: ChatSession) -> None:
        if not row.ragflow_session_id:
            return
        try:
            await self.ragflow.rename_session(row.ragflow_session_id, row.title)
        except RagflowError as exc:
            log.warning("ragflow session not renamed session_id=%s: %s", row.session_id, exc)

    async def forget(self, db: AsyncSession, ragflow_session_id: str) -> None:
        """Queue the deletion of a mirror, in the caller's transaction (call `wake` after it)."""
        await RagflowDeletionRepository.from_session(db).add(
            ragflow_session_id, self.ragflow.chat_id
        )

    def wake(self) -> None:
        """Run the pending deletions now rather than at the next interval."""
        self.deletions.wake()

    async def delete_pending(self) -> int:
        """Delete the mirrors that are due; the ones RAGFlow refuses wait, with a backoff."""
        async with self._session_factory() as db:
            due = await RagflowDeletionRepository.from_session(db).due(
                utcnow(), DELETIONS_PER_ROUND
            )
        deleted = 0
        for pending in due:
            assert pending.id is not None
            try:
                await self.ragflow.delete_session(pending.ragflow_session_id)
            except RagflowError as exc:
                backoff = min(
                    timedelta(seconds=self._retry_interval * 2**pending.attempts), MAX_BACKOFF
                )
                async with self._session_factory() as db, db.begin():
                    await RagflowDeletionRepository.from_session(db).postpone(
                        pending.id, until=utcnow() + backoff, error=str(exc)
                    )
                log.warning(
                    "ragflow session deletion postponed ragflow_session_id=%s attempts=%d: %s",
                    pending.ragflow_session_id,
                    pending.attempts + 1,
                    exc,
                )
                continue
            async with self._session_factory() as db, db.begin():
                await RagflowDeletionRepository.from_session(db).done(pending.id)
            deleted += 1
            log.info("ragflow session deleted ragflow_session_id=%s", pending.ragflow_session_id)
        return deleted
