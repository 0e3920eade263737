"""The statements of stopping a reply: the request, on the session's row (for whichever
replica generates the reply), and the requests still to carry out. A request is cleared with
the reply's `generating_message_id` (`SessionRepository.clear_generating`)."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from session_service.db.models import SESSIONS
from session_service.db.repositories import Repository

_REQUEST = (
    update(SESSIONS)
    .where(
        SESSIONS.c.session_id == bindparam("key"),
        SESSIONS.c.generating_message_id == bindparam("message"),
    )
    .values(stop_message_id=bindparam("message"))
)
# A few rows at most, found by their index: cheap to ask every half second.
_REQUESTED = select(SESSIONS.c.stop_message_id).where(SESSIONS.c.stop_message_id.is_not(None))


class StopRepository(Repository):
    async def request(self, session_id: str, message_id: int) -> bool:
        """Ask for the reply `message_id` to stop; False if it is not being generated."""
        result = await self.db.execute(_REQUEST, {"key": session_id, "message": message_id})
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def requested(self) -> set[int]:
        """The replies asked to stop and still being generated."""
        return set((await self.db.scalars(_REQUESTED)).all())
