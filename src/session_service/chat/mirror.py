"""Each session's mirror in RAGFlow: created with it (or at its first turn), renamed with it,
and deleted with it — through a table of pending deletions retried until RAGFlow confirms.

A mirror belongs to the chat that made it (`ragflow_chat_id`): it is renamed and deleted under
that chat, and made again in the configured chat once RAGFLOW_CHAT_ID names another."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.background import Repeating
from session_service.db.models import ChatSession
from session_service.db.ragflow_deletions import RagflowDeletionRepository
from session_service.db.repositories import SessionRepository
from session_service.db.types import utcnow
from session_service.ragflow.client import RagflowClient
from session_service.ragflow.errors import RagflowError, misconfigured

log = logging.getLogger(__name__)

DELETIONS_PER_ROUND = 100
MAX_BACKOFF = timedelta(minutes=10)
LOST_CREATE_SLACK_SECONDS = 60  # clocks of RAGFlow's host and ours may differ a little
LOST_CREATE_MIN_AGE_SECONDS = 5.0


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

    @property
    def chat_id(self) -> str:
        """The configured chat, where new mirrors are made."""
        return self.ragflow.chat_id

    async def create(self, title: str, user_id: str) -> str | None:
        """A new RAGFlow session, or None if RAGFlow cannot make one now (made at a turn)."""
        try:
            return await self.ragflow.create_session(title, user_id)
        except RagflowError as exc:
            level = logging.ERROR if misconfigured(exc) else logging.WARNING
            log.log(level, "ragflow session not created (tried again at the next turn): %s", exc)
            return None

    async def ensure(self, row: ChatSession, *, replacing: str | None = None) -> str | None:
        """The session's mirror id in the configured chat, creating it (or replacing a lost
        one, or one of another chat) if need be."""
        current = row.ragflow_session_id
        if current and current != replacing and row.ragflow_chat_id in (None, self.chat_id):
            return current
        replacing = current
        mirror_id = await self._lost_create(row) if current is None else None
        if mirror_id is None:
            mirror_id = await self.create(row.title, row.user_id)
        if mirror_id is None:
            return None
        async with self._session_factory() as db, db.begin():
            deletions = RagflowDeletionRepository.from_session(db)
            stored = await SessionRepository.from_session(db).set_mirror(
                row.session_id, mirror_id, self.chat_id, replacing=replacing
            )
            if not stored:  # the session is gone, or got a mirror meanwhile: ours is spare
                await deletions.add(mirror_id, self.chat_id)
            elif replacing is not None:  # gone, or in another chat: deleted there if it is
                await deletions.add(replacing, row.ragflow_chat_id or self.chat_id)
        if not stored or replacing is not None:
            self.wake()
        if not stored:
            return None
        log.info(
            "ragflow session mirrored session_id=%s ragflow_session_id=%s",
            row.session_id,
            mirror_id,
        )
        row.ragflow_session_id, row.ragflow_chat_id = mirror_id, self.chat_id
        return mirror_id

    async def _lost_create(self, row: ChatSession) -> str | None:
        """A mirror RAGFlow made for this session although its create failed (its answer was
        lost: a timeout, a dropped connection): one of this chat's sessions with the mirror's
        name, made since the session was, that no session of ours uses. Adopted rather than
        left in RAGFlow for good beside a second one."""
        try:
            found = await self.ragflow.sessions_named(row.title)
        except RagflowError as exc:
            log.warning("ragflow sessions not listed session_id=%s: %s", row.session_id, exc)
            return None
        since_ms = (row.created_at.timestamp() - LOST_CREATE_SLACK_SECONDS) * 1000
        # Old enough that a session of ours that made it has long committed its row.
        until_ms = (time.time() - LOST_CREATE_MIN_AGE_SECONDS) * 1000
        candidates = [mirror for mirror, made_ms in found if since_ms <= made_ms <= until_ms]
        if not candidates:
            return None
        async with self._session_factory() as db:
            taken = await SessionRepository.from_session(db).mirrors_in_use(candidates)
        free = [mirror for mirror in candidates if mirror not in taken]
        if free:
            log.info(
                "ragflow session adopted session_id=%s ragflow_session_id=%s",
                row.session_id,
                free[0],
            )
        return free[0] if free else None

    async def record_older_mirrors(self) -> None:
        """At start: mirrors made before their chat was recorded were made in the chat then
        configured, taken to be this one (right unless RAGFLOW_CHAT_ID changed in the same
        restart as the upgrade that began recording it)."""
        try:
            async with self._session_factory() as db, db.begin():
                recorded = await SessionRepository.from_session(db).record_mirror_chat(self.chat_id)
        except Exception as exc:  # the database may be down: the next start does it
            log.warning("older mirrors' chat not recorded: %r", exc)
            return
        if recorded:
            log.info("ragflow chat %s recorded for %d older mirrors", self.chat_id, recorded)

    async def rename(self, row: ChatSession) -> None:
        if not row.ragflow_session_id:
            return
        try:
            await self.ragflow.rename_session(
                row.ragflow_session_id, row.title, row.ragflow_chat_id or self.chat_id
            )
        except RagflowError as exc:
            level = logging.ERROR if misconfigured(exc) else logging.WARNING
            log.log(level, "ragflow session not renamed session_id=%s: %s", row.session_id, exc)

    async def forget(self, db: AsyncSession, ragflow_session_id: str, chat_id: str | None) -> None:
        """Queue the deletion of a mirror of `chat_id` (None: the configured chat), in the
        caller's transaction (call `wake` after it)."""
        await RagflowDeletionRepository.from_session(db).add(
            ragflow_session_id, chat_id or self.chat_id
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
                await self.ragflow.delete_session(pending.ragflow_session_id, pending.chat_id)
            except RagflowError as exc:
                backoff = min(
                    timedelta(seconds=self._retry_interval * 2**pending.attempts), MAX_BACKOFF
                )
                async with self._session_factory() as db, db.begin():
                    await RagflowDeletionRepository.from_session(db).postpone(
                        pending.id, until=utcnow() + backoff, error=str(exc)
                    )
                log.log(
                    logging.ERROR if misconfigured(exc) else logging.WARNING,
                    "ragflow session deletion postponed chat=%s ragflow_session_id=%s "
                    "attempts=%d: %s",
                    pending.chat_id,
                    pending.ragflow_session_id,
                    pending.attempts + 1,
                    exc,
                )
                continue
            async with self._session_factory() as db, db.begin():
                await RagflowDeletionRepository.from_session(db).done(pending.id)
            deleted += 1
            log.info(
                "ragflow session deleted (or already gone from chat %s) ragflow_session_id=%s",
                pending.chat_id,
                pending.ragflow_session_id,
            )
        return deleted
