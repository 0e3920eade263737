"""`alembic upgrade head` from code, wherever the service is installed or run from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What `upgrade_to_head` did, as alembic recorded it in the database."""

    before: str | None  # None: the database had no tables yet
    after: str | None
    applied: tuple[tuple[str, str], ...]  # (revision, its description), oldest first


@dataclass(frozen=True, slots=True)
class SchemaRevisions:
    current: str | None  # None: the database has no tables yet
    head: str | None  # the newest revision among this installation's scripts


def migrations_dir() -> Path:
    """Inside an installed wheel the scripts ship in the package; in a checkout, beside `src/`."""
    for candidate in (_PACKAGE / "alembic", _PACKAGE.parent.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the alembic migration scripts are missing from this installation")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


async def upgrade_to_head(engine: AsyncEngine) -> Upgrade:
    def upgrade(connection: Connection) -> Upgrade:
        config = alembic_config()
        config.attributes["connection"] = connection
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(config, "head")
        after = MigrationContext.configure(connection).get_current_revision()
        scripts = ScriptDirectory.from_config(config)
        path = scripts.iterate_revisions(after, before)  # newest first, `before` left out
        applied = tuple((script.revision, script.doc) for script in path)[::-1]
        return Upgrade(before, after, applied)

    async with engine.begin() as connection:
        return await connection.run_sync(upgrade)


async def schema_revisions(engine: AsyncEngine) -> SchemaRevisions:
    def read(connection: Connection) -> SchemaRevisions:
        current = MigrationContext.configure(connection).get_current_revision()
        return SchemaRevisions(
            current, ScriptDirectory.from_config(alembic_config()).get_current_head()
        )

    async with engine.connect() as connection:
        return await connection.run_sync(read)
