"""The database's hosts: the one in DATABASE_URL, or the nodes in DATABASE_HOSTS (a Galera
cluster's, or any set of servers holding the same data). Connections go to one writer at a
time; when it refuses them, does not answer within DB_CONNECT_TIMEOUT_SECONDS, or is a Galera
node not ready for clients (`wsrep_ready` OFF, or error 1047 on a statement), new connections
go to the next host, without a restart. Connections already open to a host that left fail
their pre-ping and are made again."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

NOT_READY = 1047  # "WSREP has not yet prepared node for application use"


class Hosts:
    def __init__(self, url: URL, hosts: list[tuple[str, int]], timeout: float) -> None:
        self.url = url
        self.hosts = hosts or [(url.host or "127.0.0.1", url.port or 3306)]
        self.timeout = timeout
        self.current = 0  # the writer: where new connections go first
        self.dialect = url.get_dialect(_is_async=True)()
        self.driver = importlib.import_module(self.dialect.driver)  # aiomysql (or asyncmy)
        # Raised as the driver's own error, SQLAlchemy reports it as any failed connect.
        self.operational_error = self.dialect.import_dbapi().OperationalError

    async def connect(self) -> Any:
        """A connection to the writer, or to the next host that takes one."""
        failure: Exception | None = None
        for step in range(len(self.hosts)):
            index = (self.current + step) % len(self.hosts)
            try:
                connection = await self._connect(*self.hosts[index])
            except self.operational_error as exc:
                if len(self.hosts) > 1:  # one host: the error says it all
                    log.warning(
                        "database host %s:%d refused a connection: %r (%r)",
                        *self.hosts[index],
                        exc,
                        exc.__cause__,
                    )
                failure = exc
                continue
            if index != self.current:
                log.warning("database writer is now %s:%d", *self.hosts[index])
                self.current = index
            return connection
        assert failure is not None
        raise failure

    def leave(self) -> None:
        """The writer stopped serving clients: new connections start at the next host."""
        if len(self.hosts) > 1:
            self.current = (self.current + 1) % len(self.hosts)

    async def _connect(self, host: str, port: int) -> Any:
        """Connect with the driver's own arguments, all of it (TCP, handshake, login) within
        the timeout: the driver's `connect_timeout` covers only the TCP connect, and a server
        that accepts but never answers would otherwise hang the request for good."""
        cargs, cparams = self.dialect.create_connect_args(self.url.set(host=host, port=port))
        cparams["connect_timeout"] = self.timeout
        try:
            connection = await asyncio.wait_for(
                self.driver.connect(*cargs, **cparams), self.timeout
            )
        except TimeoutError:
            raise self.operational_error(
                2003, f"no answer from the database at {host}:{port} in {self.timeout}s"
            ) from None
        if not await _prepared(connection):
            connection.close()
            raise self.operational_error(NOT_READY, f"{host}:{port} is not ready for clients")
        return connection


async def _prepared(connection: Any) -> bool:
    """Whether the server takes clients (a Galera node: `wsrep_ready`; any other: yes). On a
    Galera node, every read of the connection first waits until the node has applied what the
    cluster committed before it (`wsrep_sync_wait = 1`): a replica reading through one node
    sees what another wrote through another (a turn's lease, a stored reply, a deletion)."""
    async with connection.cursor() as cursor:
        await cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        on = await cursor.fetchone()
        ready = None
        if on is not None and on[1] == "ON":
            await cursor.execute("SHOW STATUS LIKE 'wsrep_ready'")
            ready = await cursor.fetchone()
            await cursor.execute("SET SESSION wsrep_sync_wait = 1")
    await connection.commit()  # end the implicit transaction the reads began
    return ready is None or ready[1] == "ON"
