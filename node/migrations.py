"""Schema migrations: the numbered files in `sql/`, applied in order at start-up.

`apply_migrations` is idempotent and safe to run from several processes at once: it takes a
PostgreSQL advisory lock, reads `schema_migrations`, and applies each missing file in its own
transaction together with the row that records it. A file already applied whose text has changed
since is refused (a migration is never edited once shipped: add a new number).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from node.errors import StoreError

#: The folder of numbered migrations (`001_name.sql`, ...), next to the `node` package.
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
#: Arbitrary constant naming the advisory lock every migrating process takes.
MIGRATION_LOCK_KEY = 0x4E41_4501  # "NAE" 1
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    sha256      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


class Migration:
    """One numbered migration file: its name, text and checksum."""

    __slots__ = ("name", "sql", "sha256")

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        self.sql = sql
        self.sha256 = hashlib.sha256(sql.encode()).hexdigest()


def load_migrations(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The migration files in `sql_dir`, in number order. Raises `StoreError` on a bad name or a
    duplicate number."""
    if not sql_dir.is_dir():
        raise StoreError("migrations folder not found: " + str(sql_dir))
    found: list[Migration] = []
    numbers: set[str] = set()
    for path in sorted(sql_dir.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise StoreError("migration file name must look like 001_name.sql: " + path.name)
        if m.group(1) in numbers:
            raise StoreError("two migrations share number " + m.group(1))
        numbers.add(m.group(1))
        found.append(Migration(path.name, path.read_text()))
    return found


async def apply_migrations(dsn_or_conn: str | asyncpg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied by this call (in order).

    Takes `pg_advisory_lock` for the whole run so concurrent starters queue up; the second finds
    everything applied and returns []. Raises `StoreError` when a recorded migration's file changed
    or a migration fails (its transaction is rolled back, later ones are not tried).
    """
    migrations = load_migrations(sql_dir)
    own = isinstance(dsn_or_conn, str)
    conn: asyncpg.Connection = await asyncpg.connect(dsn_or_conn) if own else dsn_or_conn  # type: ignore[assignment]
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            return await _apply_locked(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        if own:
            await conn.close()


async def applied_migrations(conn: asyncpg.Connection) -> dict[str, str]:
    """name -> sha256 of every migration recorded in this database ({} before the first run)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT name, sha256 FROM schema_migrations")
    return {r["name"]: r["sha256"] for r in rows}


async def _apply_locked(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(_CREATE_TABLE)
    done = await applied_migrations(conn)
    applied: list[str] = []
    for mig in migrations:
        recorded = done.get(mig.name)
        if recorded is not None:
            if recorded != mig.sha256:
                raise StoreError(
                    "migration " + mig.name + " changed after it was applied; add a new numbered file instead"
                )
            continue
        try:
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", mig.name, mig.sha256
                )
        except asyncpg.PostgresError as exc:
            raise StoreError("migration " + mig.name + " failed: " + str(exc)) from exc
        applied.append(mig.name)
    return applied


# ---------------------------------------------------------------- scratch databases (tests, benches)


def database_url_for(server_url: str, name: str) -> str:
    """`server_url` with its database (the URL path) replaced by `name`; query kept."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def create_database(server_url: str, prefix: str = "nae_scratch_") -> tuple[str, str]:
    """CREATE DATABASE <prefix><random hex> on the server of `server_url`; returns (name, its URL)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
        raise StoreError("database name prefix must be a lower-case identifier: " + prefix)
    name = prefix + secrets.token_hex(4)
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute("CREATE DATABASE " + name)
    finally:
        await conn.close()
    return name, database_url_for(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE IF EXISTS `name` WITH (FORCE) (PostgreSQL 13+): ends its sessions first."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,60}", name):
        raise StoreError("not a scratch database name: " + name)
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
    finally:
        await conn.close()
