"""A TCP proxy in its own thread, to cut the service off from MariaDB and give it back.

`cut("refuse")`: existing connections are reset and new ones refused (a database that went
down). `cut("silent")`: existing connections are reset and new ones accepted but never
answered (a server that hangs). `restore()` listens again on the same port.
`lose_next(statement, delivered, skip=0)`: the next statement containing `statement` (COMMIT
by default) that a client sends, past `skip` others, ends its connection, after the server has
it or before: either way the client never hears the answer. `fail_next(statement, code)`:
the next statement containing `statement` is answered with MySQL error `code` (a deadlock,
1213, by default) instead of reaching the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

COMMIT = b"\x03COMMIT"  # MySQL's COM_QUERY with the statement


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._mode = "up"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lose: tuple[bytes, bool] | None = None  # armed: what, and whether it gets there
        self._skip = 0
        self.lost = 0
        self._fail: tuple[bytes, int] | None = None  # armed: what, and with which error
        self.failed = 0

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close_all(stop_listening=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut(self, mode: str = "refuse") -> None:
        assert mode in ("refuse", "silent")
        self._mode = mode
        self._call(self._close_all(stop_listening=mode == "refuse"))

    def restore(self) -> None:
        self._mode = "up"
        if self._server is None:
            self._call(self._listen())

    def lose_next(self, statement: bytes = COMMIT, *, delivered: bool, skip: int = 0) -> None:
        self._lose, self._skip = (statement, delivered), skip

    def fail_next(self, statement: bytes, code: int = 1213) -> None:
        self._fail = (statement, code)

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self, *, stop_listening: bool) -> None:
        if stop_listening and self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self._writers.add(client)
        if self._mode != "up":
            return  # silent: hold the connection open and say nothing
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            return
        self._writers.add(upstream)
        await asyncio.gather(
            self._pipe(client_reader, upstream, client), self._pipe(upstream_reader, client)
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter | None = None,  # the client sends what `reader` reads
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self._mode != "up":
                    break
                if client is not None and self._fail is not None and self._fail[0] in data:
                    (_, code), self._fail = self._fail, None
                    client.write(_error_packet(data[3] + 1, code))  # the answer's sequence id
                    self.failed += 1
                    continue
                if client is not None and self._lose is not None and self._lose[0] in data:
                    if self._skip:
                        self._skip -= 1
                        writer.write(data)
                        await writer.drain()
                        continue
                    (_, delivered), self._lose = self._lose, None
                    client.transport.abort()  # it never hears the answer
                    self.lost += 1
                    if delivered:  # the server has it: it commits
                        writer.write(data)
                        await writer.drain()
                        await asyncio.sleep(0.2)
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


def _error_packet(sequence: int, code: int) -> bytes:
    """MySQL's ERR packet: 0xFF, the error code, '#' and an SQL state, the message."""
    payload = b"\xff" + code.to_bytes(2, "little") + b"#40001" + b"Deadlock found (injected)"
    return len(payload).to_bytes(3, "little") + bytes([sequence % 256]) + payload
