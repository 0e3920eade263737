"""The agents of every worker process of this replica, for the admin routes.

Under `serve --workers N` each worker holds its own AgentPool, and the worker answering an
admin's request is any one of them. So each worker listens on a unix socket `<pid>.sock` in a
directory `serve` makes for the replica (named by WORKERS_DIR_ENV), answering one JSON line
(`status`, `release_idle`, or `release` of a deleted session's agent) with one JSON document.
The worker answering the admin reads its own pool directly and asks the others, all at once,
each within a short timeout: a socket nobody listens on any more (its worker was killed) is
removed, and a worker that does not answer in time is left out and logged. With no directory
(one worker, or the in-process app of the tests) there is no socket: only the local pool.

The directory is made private (0700) by `serve`: the sockets need no other authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from session_service.agents.pool import AgentInfo, AgentPool
from session_service.metrics import ReleaseReason

log = logging.getLogger(__name__)

WORKERS_DIR_ENV = "SESSION_SERVICE_WORKERS_DIR"
ASK_TIMEOUT_SECONDS = 2.0  # an admin request waits no longer for a busy or stuck worker

Answer = TypeVar("Answer")


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker's pool: its counts and its `limit` most idle agents, most idle first."""

    pid: int
    active_agents: int
    max_agents: int
    evictions_total: int
    restores_total: int
    agents: list[AgentInfo]


@dataclass(frozen=True, slots=True)
class WorkerRelease:
    """What an admin's cleanup released in one worker, and what that worker still holds."""

    pid: int
    released: list[str]
    active_agents: int


_STATUS = TypeAdapter(WorkerStatus)
_RELEASE = TypeAdapter(WorkerRelease)
_RELEASED = TypeAdapter(bool)


class Workers:
    """The replica's worker processes seen from one of them: `status` and `release_idle` cover
    every worker; `start`/`stop` (the app's lifespan) let the others reach this one."""

    def __init__(
        self,
        pool: AgentPool,
        directory: Path | None = None,
        *,
        pid: int | None = None,
        timeout: float = ASK_TIMEOUT_SECONDS,
    ) -> None:
        self.pool = pool
        self.directory = directory
        self.pid = os.getpid() if pid is None else pid
        self.timeout = timeout
        self._server: asyncio.Server | None = None

    @classmethod
    def from_environment(cls, pool: AgentPool) -> Workers:
        """Workers sharing the directory `serve --workers N` named, or just this process."""
        directory = os.environ.get(WORKERS_DIR_ENV)
        return cls(pool, Path(directory) if directory else None)

    async def start(self) -> None:
        if self.directory is not None:
            self._server = await asyncio.start_unix_server(
                self._answer, path=self._socket(self.pid)
            )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._socket(self.pid).unlink(missing_ok=True)

    async def status(self, limit: int) -> list[WorkerStatus]:
        """Every worker's pool that answered, by pid."""
        others = await self._ask_others({"op": "status", "limit": limit}, _STATUS.validate_json)
        return sorted([self._status(limit), *others], key=lambda worker: worker.pid)

    async def release_idle(self, max_age: float) -> list[WorkerRelease]:
        """Release, in every worker, the agents idle at least `max_age` seconds (an admin's
        cleanup: counted as `manual`); what each worker that answered released, by pid."""
        mine = self._release_idle(max_age)
        others = await self._ask_others(
            {"op": "release_idle", "max_age": max_age}, _RELEASE.validate_json
        )
        return sorted([mine, *others], key=lambda worker: worker.pid)

    async def release(self, session_id: str) -> None:
        """Release a deleted session's agent in every worker that holds it."""
        self.pool.release(session_id, reason=ReleaseReason.DELETED)
        await self._ask_others({"op": "release", "session_id": session_id}, _RELEASED.validate_json)

    def _status(self, limit: int) -> WorkerStatus:
        pool = self.pool
        return WorkerStatus(
            self.pid,
            len(pool),
            pool.max_size,
            pool.evictions_total,
            pool.restores_total,
            pool.snapshot(limit),
        )

    def _release_idle(self, max_age: float) -> WorkerRelease:
        released = self.pool.release_idle(max_age, reason=ReleaseReason.MANUAL)
        log.info(
            "agents released reason=manual max_age=%ss released=%d active=%d",
            max_age,
            len(released),
            len(self.pool),
        )
        return WorkerRelease(self.pid, released, len(self.pool))

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request of another worker of the replica."""
        try:
            request = json.loads(await reader.readline())
            match request["op"]:
                case "status":
                    answer = _STATUS.dump_json(self._status(int(request["limit"])))
                case "release_idle":
                    answer = _RELEASE.dump_json(self._release_idle(float(request["max_age"])))
                case "release":
                    released = self.pool.release(
                        str(request["session_id"]), reason=ReleaseReason.DELETED
                    )
                    answer = _RELEASED.dump_json(released)
                case unknown:
                    raise ValueError(f"unknown request {unknown!r}")
            writer.write(answer)
            await writer.drain()
        except Exception:
            log.exception("answering another worker failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _ask_others(
        self, request: dict[str, Any], parse: Callable[[bytes], Answer]
    ) -> list[Answer]:
        if self.directory is None:
            return []
        sockets = [path for path in self.directory.glob("*.sock") if path != self._socket(self.pid)]
        answers = await asyncio.gather(*(self._ask(path, request, parse) for path in sockets))
        return [one for one in answers if one is not None]

    async def _ask(
        self, path: Path, request: dict[str, Any], parse: Callable[[bytes], Answer]
    ) -> Answer | None:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(path)
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    await writer.drain()
                    return parse(await reader.read())
                finally:
                    writer.close()
        except FileNotFoundError:
            return None  # its worker stopped since the directory was listed
        except ConnectionRefusedError:
            log.warning("worker %s is gone: removing its socket", path.stem)
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except (OSError, ValidationError) as exc:  # TimeoutError included
            log.warning("worker %s did not answer %s: %r", path.stem, request["op"], exc)
        return None

    def _socket(self, pid: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{pid}.sock"
