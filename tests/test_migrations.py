"""The migrations: a line of messages becomes one branch of the tree and is indexed for
search, on MariaDB and SQLite; and the migrated schema is the one the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from session_service.db.migrate import alembic_config
from session_service.db.models import metadata
from session_service.db.search_terms import owner_key
from tests.helpers import scratch_database

BEFORE_THE_TREE = "20261129_0006"


@pytest.fixture(params=["mariadb", "sqlite"])
def empty_database(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'tree.db'}"
        return
    with scratch_database(database_url, "ss_tree") as url:
        yield url


def _sync(url: str) -> str:
    return url.replace("+aiomysql", "+pymysql").replace("+aiosqlite", "")


def _upgrade(url: str, revision: str) -> None:
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, revision)


def test_every_session_becomes_one_branch(empty_database: str) -> None:
    _upgrade(empty_database, BEFORE_THE_TREE)
    engine = sa.create_engine(_sync(empty_database))
    with engine.begin() as db:
        for session_id, count in (("a", 3), ("b", 4), ("empty", 0)):
            db.execute(
                sa.text(
                    "INSERT INTO chat_sessions (session_id, user_id, title, context, "
                    "message_count, created_at, updated_at) VALUES (:s, 'u', 't', '{}', :n, "
                    "'2026-11-01 00:00:00', '2026-11-01 00:00:00')"
                ),
                {"s": session_id, "n": count},
            )
            for seq in range(1, count + 1):  # ids interleaved between the sessions
                db.execute(
                    sa.text(
                        "INSERT INTO chat_messages (session_id, seq, role, content, timestamp, "
                        "metadata) VALUES (:s, :q, :r, :c, '2026-11-01 00:00:00', '{}')"
                    ),
                    {
                        "s": session_id,
                        "q": seq,
                        "r": "user" if seq % 2 else "assistant",
                        "c": f"{session_id}{seq}",
                    },
                )
    _upgrade(empty_database, "head")
    with engine.connect() as db:
        rows = db.execute(
            sa.text("SELECT session_id, id, parent_id FROM chat_messages ORDER BY session_id, seq")
        ).all()
        active = dict(
            db.execute(sa.text("SELECT session_id, active_message_id FROM chat_sessions")).all()
        )
        indexed = db.execute(sa.text("SELECT message_id, term, owner FROM search_terms")).all()
        contents = db.execute(sa.text("SELECT id, content FROM chat_messages")).all()
    engine.dispose()
    # the stored messages are indexed for search ("a1": one word), under their owner
    assert len(contents) == 7
    assert sorted(indexed) == sorted((i, c, owner_key("u")) for i, c in contents)
    for session_id in ("a", "b"):
        ids = [(i, p) for s, i, p in rows if s == session_id]
        assert [p for _, p in ids] == [None, *[i for i, _ in ids[:-1]]]
        assert active[session_id] == ids[-1][0]
    assert active["empty"] is None


def test_the_migrated_schema_is_what_the_models_say(empty_database: str) -> None:
    _upgrade(empty_database, "head")
    engine = sa.create_engine(_sync(empty_database))
    with engine.connect() as db:
        differences = compare_metadata(MigrationContext.configure(db), metadata)
    engine.dispose()
    assert differences == []
