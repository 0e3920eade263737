"""The async engine and session factory, made once in the app's lifespan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from session_service.config import Settings
from session_service.db.contention import IN_DOUBT
from session_service.db.hosts import NOT_READY, Hosts


def _json_dumps(value: Any) -> str:
    # Keep 4-byte characters readable in the database instead of \ud834\udd1e escapes.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def database_url(raw: str) -> URL:
    """The configured URL, with MySQL forced to utf8mb4."""
    url = make_url(raw)
    if url.get_backend_name() in ("mysql", "mariadb"):
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


RESERVE_POOL_TIMEOUT_SECONDS = 60.0
COMMITTING = "session_service.committing"  # in a connection's info: a COMMIT is being sent


def create_engine(settings: Settings, *, reserve: bool = False) -> AsyncEngine:
    """The engine of requests; or (`reserve`) the small one of what a turn must not lose to a
    busy pool: storing a generated reply, renewing and letting go of its lease, recovery. The
    reserve's connections are its own, and it waits for one long instead of failing."""
    url = database_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    hosts = Hosts(url, settings.database_host_list, settings.db_connect_timeout_seconds)
    engine = create_async_engine(
        url,
        async_creator=hosts.connect,
        # Each statement reads what is committed when it runs. Under InnoDB's default
        # (REPEATABLE READ) the plain reads of a transaction see the snapshot of its first
        # read, older than the row its `FOR UPDATE` then locks: a branch switch could make a
        # reply removed meanwhile the active leaf, and the next question its child.
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        pool_recycle=3600,
        pool_size=settings.db_reserve_pool_size if reserve else settings.db_pool_size,
        max_overflow=0 if reserve else settings.db_max_overflow,
        pool_timeout=RESERVE_POOL_TIMEOUT_SECONDS if reserve else settings.db_pool_timeout_seconds,
        json_serializer=_json_dumps,
    )

    @event.listens_for(engine.sync_engine, "handle_error")
    def _failed(context: Any) -> None:
        # a Galera node that left the cluster answers 1047: drop the connection, go elsewhere
        args = getattr(context.original_exception, "args", ())
        if args and args[0] == NOT_READY:
            context.is_disconnect = True
            hosts.leave()
        # raised by the COMMIT (not by a statement, nor by a ROLLBACK): it may have happened
        connection = context.connection
        committing = connection is not None and _committing_on(connection)
        if committing and not context.is_pre_ping and context.sqlalchemy_exception is not None:
            context.sqlalchemy_exception.add_note(IN_DOUBT)

    @event.listens_for(engine.sync_engine, "commit")
    def _committing(connection: Any) -> None:
        connection.info[COMMITTING] = True

    @event.listens_for(engine.sync_engine, "begin")
    @event.listens_for(engine.sync_engine, "rollback")
    def _not_committing(connection: Any) -> None:
        if not connection.invalidated:  # an invalidated one has no info until reconnected
            connection.info[COMMITTING] = False

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        record.info[COMMITTING] = False  # not from its last use

    return engine


def _committing_on(connection: Any) -> bool:
    return not connection.invalidated and bool(connection.info.get(COMMITTING))


def _sqlite_engine(url: URL, settings: Settings) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        pool_pre_ping=True,
        connect_args={"timeout": settings.db_pool_timeout_seconds},
        json_serializer=_json_dumps,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
        # SQLite's own lower() folds ASCII only; search compares titles lower-cased as Python does
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    return engine


def _lower(text: str | None) -> str | None:
    return None if text is None else text.lower()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: rows stay readable after the request's commit.
    return async_sessionmaker(engine, expire_on_commit=False)
