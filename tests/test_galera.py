"""Past one database server: two replicas of the service writing through two nodes of a real
3-node MariaDB Galera cluster (tests/galera.py). Galera reports a lost certification as a
deadlock (1213) at any statement or at COMMIT; what a client is told must be what every node
stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from alembic import command
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from session_service.db.engine import create_engine, create_session_factory
from session_service.db.migrate import alembic_config
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.galera import Cluster, Node
from tests.helpers import Headers, assert_one_writer, new_session, stored, turn

DATABASE = "ss_galera"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    why = Cluster.available()
    if why is not None:
        pytest.fail(why)
    cluster = _formed()
    try:
        cluster.nodes[0].query(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
        config = alembic_config()
        config.set_main_option("sqlalchemy.url", cluster.nodes[0].url + DATABASE)
        command.upgrade(config, "head")
        yield cluster
    finally:
        cluster.close()


def _formed() -> Cluster:
    """A cluster formed, at the second try if need be: ports picked free may be taken before
    a node binds them."""
    try:
        return _started()
    except RuntimeError:
        return _started()


def _started() -> Cluster:
    cluster = Cluster()
    try:
        cluster.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture
async def replicas(
    cluster: Cluster, llm_settings: Callable[..., Settings]
) -> AsyncIterator[list[AsyncClient]]:
    """The service twice: one writing through node 1, the other through node 2."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                serve_app(llm_settings(database_url=node.url + DATABASE))
            )
            for node in cluster.nodes[:2]
        ]


@pytest.fixture
async def node3(cluster: Cluster) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Reads through the third node, which no replica writes to."""
    engine = create_engine(Settings(database_url=cluster.nodes[2].url + DATABASE))
    yield create_session_factory(engine)
    await engine.dispose()


def _everywhere(cluster: Cluster, sql: str) -> list[list[tuple[Any, ...]]]:
    """What each node stores, read on each (after it has applied what it was sent)."""
    return [_synced(node, sql) for node in cluster.nodes]


def _synced(node: Node, sql: str) -> list[tuple[Any, ...]]:
    return node.query(sql, DATABASE, sync_wait=True)


async def test_concurrent_turns_through_two_nodes_strictly_alternate(
    replicas: list[AsyncClient],
    fake_llm: FakeLLM,
    alice: Headers,
    node3: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.delay = 0.02
    one, two = replicas
    session_id = await new_session(one, alice)
    responses = await asyncio.gather(
        *(turn((one, two)[i % 2], alice, session_id, f"q{i}") for i in range(12))
    )
    assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses]
    rows = await stored(node3, session_id)  # read with wsrep_sync_wait, as the service reads
    assert len(rows) == 24
    assert_one_writer(rows, fake_llm.calls)
    async with node3() as db:
        assert await db.scalar(text("SELECT @@SESSION.wsrep_sync_wait")) == 1


async def test_racing_deletes_answer_what_every_node_stores(
    replicas: list[AsyncClient], cluster: Cluster, alice: Headers
) -> None:
    one, two = replicas
    session_id = await new_session(one, alice)
    deletes = await asyncio.gather(
        *((one, two)[i % 2].delete(f"/api/sessions/{session_id}", headers=alice) for i in range(6))
    )
    assert sorted(r.status_code for r in deletes) == [204, 404, 404, 404, 404, 404]
    stored_everywhere = _everywhere(
        cluster, f"SELECT COUNT(*) FROM chat_sessions WHERE session_id = '{session_id}'"
    )
    assert stored_everywhere == [[(0,)]] * 3


async def test_racing_creates_and_patches_answer_what_every_node_stores(
    replicas: list[AsyncClient], cluster: Cluster, alice: Headers
) -> None:
    one, two = replicas
    for attempt in range(5):
        session_id = f"galera-{attempt}"
        created = await asyncio.gather(
            *(
                client.post(
                    "/api/sessions",
                    json={"session_id": session_id, "title": f"from {name}"},
                    headers=alice,
                )
                for client, name in ((one, "one"), (two, "two"))
            )
        )
        assert sorted(r.status_code for r in created) == [201, 409], [r.text for r in created]
        (winner,) = [r.json()["title"] for r in created if r.status_code == 201]
        sql = f"SELECT title FROM chat_sessions WHERE session_id = '{session_id}'"
        assert _everywhere(cluster, sql) == [[(winner,)]] * 3
        patched = await asyncio.gather(
            *(
                client.patch(f"/api/sessions/{session_id}", json={"title": title}, headers=alice)
                for client, title in ((one, "patched one"), (two, "patched two"))
            )
        )
        answered = {r.json()["title"] for r in patched if r.status_code == 200}
        assert {r.status_code for r in patched} <= {200, 409}, [r.text for r in patched]
        (title,) = {row[0][0] for row in _everywhere(cluster, sql)}
        assert title in answered


async def test_a_replica_fails_over_when_its_node_leaves(
    cluster: Cluster, llm_settings: Callable[..., Settings], alice: Headers
) -> None:
    """DATABASE_HOSTS: node 1 stops under the replica; its next requests go to node 2, with
    no restart; readiness stays 200 while a node serves; node 1 rejoins."""
    first, second = cluster.nodes[:2]
    settings = llm_settings(
        database_url=first.url + DATABASE,
        database_hosts=f"127.0.0.1:{first.sql},127.0.0.1:{second.sql}",
        db_connect_timeout_seconds=2,
    )
    async with serve_app(settings) as client:
        session_id = await new_session(client, alice)
        assert (await turn(client, alice, session_id, "before")).status_code == 201
        cluster.stop_node(first)
        try:
            assert (await client.get("/health/ready")).status_code == 200
            after = await turn(client, alice, session_id, "after")
            assert after.status_code == 201, after.text
            assert (await new_session(client, alice)) != session_id
            rows = _synced(
                second, f"SELECT COUNT(*) FROM chat_messages WHERE session_id = '{session_id}'"
            )
            assert rows == [(4,)]
        finally:
            cluster.start_node(first)
    assert _synced(
        first, f"SELECT COUNT(*) FROM chat_messages WHERE session_id = '{session_id}'"
    ) == [(4,)]


async def test_a_reply_generated_while_its_node_leaves_is_stored_through_the_next(
    cluster: Cluster,
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    """Node 1 stops while the LLM answers: the reply is stored through node 2 and answered
    201; the same client_message_id sent again (to another replica) gets that pair back."""
    first, second = cluster.nodes[:2]
    hosts = f"127.0.0.1:{first.sql},127.0.0.1:{second.sql}"
    settings = llm_settings(
        database_url=first.url + DATABASE, database_hosts=hosts, db_connect_timeout_seconds=2
    )
    fake_llm.delay = 1.5
    async with serve_app(settings) as client:
        session_id = await new_session(client, alice)
        running = asyncio.create_task(
            turn(client, alice, session_id, "slow", client_message_id="galera-retry")
        )
        await asyncio.sleep(0.5)  # the question is stored, the LLM is answering
        cluster.stop_node(first)
        try:
            answered = await running
        finally:
            cluster.start_node(first)
    assert answered.status_code == 201, answered.text
    assert answered.json()["assistant_message"]["content"] == "echo: slow"
    second_settings = llm_settings(database_url=second.url + DATABASE)
    async with serve_app(second_settings) as other:
        again = await turn(other, alice, session_id, "slow", client_message_id="galera-retry")
    assert again.status_code == 200, again.text
    assert again.json() == answered.json()


async def test_a_turns_lease_is_renewed_through_the_next_node(
    cluster: Cluster,
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    """Node 1 stops while a turn's reply is generated for longer than its lease: the lease is
    renewed through node 2, so another replica's turn is refused (not let in) meanwhile."""
    first, second = cluster.nodes[:2]
    hosts = f"127.0.0.1:{first.sql},127.0.0.1:{second.sql}"
    lease = {"turn_lock_lease_seconds": 1.5, "db_connect_timeout_seconds": 2}
    fake_llm.delay = 8
    async with (
        serve_app(
            llm_settings(database_url=first.url + DATABASE, database_hosts=hosts, **lease)
        ) as client,
        serve_app(llm_settings(database_url=second.url + DATABASE, **lease)) as other,
    ):
        session_id = await new_session(client, alice)
        running = asyncio.create_task(turn(client, alice, session_id, "long"))
        await asyncio.sleep(0.5)  # the question is stored, the LLM is answering
        await asyncio.to_thread(cluster.stop_node, first)
        try:
            await asyncio.sleep(2.5)  # past the lease: renewed through node 2, or expired
            assert not running.done()  # still generating
            refused = await turn(other, alice, session_id, "meanwhile", if_busy="reject")
            answered = await running
        finally:
            await asyncio.to_thread(cluster.start_node, first)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "session_busy"
    assert answered.status_code == 201, answered.text


async def test_readiness_says_when_its_node_is_not_synced(
    cluster: Cluster, llm_settings: Callable[..., Settings]
) -> None:
    third = cluster.nodes[2]
    async with serve_app(llm_settings(database_url=third.url + DATABASE)) as client:
        assert (await client.get("/health/ready")).status_code == 200
        third.query("SET GLOBAL wsrep_desync = ON")  # as a donor is: out of sync on purpose
        try:
            desynced = await client.get("/health/ready")
        finally:
            third.query("SET GLOBAL wsrep_desync = OFF")
        assert desynced.status_code == 503
        assert "Galera node not ready" in desynced.json()["detail"]
        assert (await client.get("/health/ready")).status_code == 200


async def test_a_node_stopped_and_rejoined_under_load_loses_and_refuses_nothing(
    cluster: Cluster, llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    """Two replicas, each naming the three nodes (its own first: one in DATABASE_HOSTS, the
    other in DATABASE_URL), under concurrent turns and session writes while node 1 stops and
    rejoins: every request is answered (no 503: two nodes were up throughout), and every node
    stores each answered turn once, in order."""
    ports = [node.sql for node in cluster.nodes]
    fake_llm.delay = 0.05

    def hosts(first: int) -> str:
        return ",".join(f"127.0.0.1:{ports[(first + n) % 3]}" for n in range(3))

    fails_over = {"db_connect_timeout_seconds": 2}
    settings = [
        llm_settings(
            database_url=cluster.nodes[0].url + DATABASE, database_hosts=hosts(0), **fails_over
        ),
        llm_settings(database_url=f"mysql+aiomysql://root@{hosts(1)}/{DATABASE}", **fails_over),
    ]
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(serve_app(each)) for each in settings]
        sessions = [await new_session(replicas[0], alice) for _ in range(3)]
        load = _Load(replicas, alice)
        running = [
            asyncio.create_task(load.turns(session_id, replica, f"{index}.{number}"))
            for index, session_id in enumerate(sessions)
            for number, replica in enumerate(replicas)
        ]
        running += [asyncio.create_task(load.writes(replica)) for replica in replicas]
        await asyncio.sleep(2)
        await asyncio.to_thread(cluster.stop_node, cluster.nodes[0])
        await asyncio.sleep(2)
        await asyncio.to_thread(cluster.start_node, cluster.nodes[0])
        await asyncio.sleep(2)
        load.done.set()
        await asyncio.gather(*running)
    assert load.refused == [], load.refused
    assert len(load.answered) > 20
    for session_id in sessions:
        sql = (
            "SELECT seq, role, content FROM chat_messages "
            f"WHERE session_id = '{session_id}' ORDER BY seq"
        )
        rows = _everywhere(cluster, sql)
        assert rows[0] == rows[1] == rows[2]
        history = [(int(seq), str(role), str(content)) for seq, role, content in rows[0]]
        assert [seq for seq, _, _ in history] == list(range(1, len(history) + 1))
        pairs = list(zip(history[::2], history[1::2], strict=True))
        for (_, role_q, question), (_, role_a, reply) in pairs:
            assert (role_q, role_a, reply) == ("user", "assistant", f"echo: {question}")
        questions = [question for (_, _, question), _ in pairs]
        assert len(questions) == len(set(questions))  # each turn stored once
        answered_here = [q for s, q in load.answered if s == session_id]
        assert set(answered_here) <= set(questions)


class _Load:
    """Turns and session writes sent until `done`; what was answered, and what was not."""

    def __init__(self, replicas: list[AsyncClient], headers: Headers) -> None:
        self.replicas = replicas
        self.headers = headers
        self.done = asyncio.Event()
        self.answered: list[tuple[str, str]] = []  # (session, question) answered 201
        self.refused: list[str] = []

    async def turns(self, session_id: str, client: AsyncClient, name: str) -> None:
        number = 0
        while not self.done.is_set():
            number += 1
            question = f"q{name}.{number}"
            response = await turn(
                client, self.headers, session_id, question, client_message_id=question
            )
            if response.status_code == 201:
                self.answered.append((session_id, question))
            else:
                self.refused.append(f"turn {question}: {response.status_code} {response.text}")

    async def writes(self, client: AsyncClient) -> None:
        """Create, rename, read and delete sessions."""
        number = 0
        while not self.done.is_set():
            number += 1
            created = await client.post("/api/sessions", json={}, headers=self.headers)
            self._expect(created, 201)
            if created.status_code != 201:
                continue
            path = f"/api/sessions/{created.json()['session_id']}"
            renamed = await client.patch(path, json={"title": f"t{number}"}, headers=self.headers)
            self._expect(renamed, 200)
            self._expect(await client.get(path, headers=self.headers), 200)
            self._expect(await client.get("/api/sessions", headers=self.headers), 200)
            self._expect(await client.delete(path, headers=self.headers), 204)

    def _expect(self, response: Any, status: int) -> None:
        if response.status_code != status:
            request = response.request
            self.refused.append(
                f"{request.method} {request.url.path}: {response.status_code} {response.text}"
            )
