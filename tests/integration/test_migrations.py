"""node.migrations against the real PostgreSQL: in order, idempotent, safe with concurrent starters,
refuses edited migrations, rolls back a failing one; plus the encrypted OAuth token table."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
from pathlib import Path

import asyncpg
import pytest

from node.errors import StoreError
from node.migrations import SQL_DIR, apply_migrations, create_database, drop_database, load_migrations
from node.token_vault import TokenVault, load_token, store_token

SERVER_URL = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
EXPECTED_TABLES = {
    "signals", "orders", "fills", "order_events", "ledger_dead_letters", "reconciliation_results",
    "circuit_breaker_state", "strategy_state", "oauth_tokens", "monitoring_events", "failover_events",
    "schema_migrations", "reconciliation_runs", "control_events", "reconciliation_openings",
}  # fmt: skip


@pytest.fixture
async def scratch_db():
    name, url = await create_database(SERVER_URL, "nae_test_mig_")
    yield url
    await drop_database(SERVER_URL, name)


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def test_apply_twice_is_a_no_op(scratch_db: str) -> None:
    names = [m.name for m in load_migrations()]
    assert names == sorted(names) and names[0].startswith("001_")
    assert await apply_migrations(scratch_db) == names
    assert await _tables(scratch_db) == EXPECTED_TABLES
    assert await apply_migrations(scratch_db) == []
    conn = await asyncpg.connect(scratch_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(names)
        # a passed-in connection is used and left open
        assert await apply_migrations(conn) == []
        assert not conn.is_closed()
    finally:
        await conn.close()


async def test_concurrent_appliers_apply_each_migration_once(scratch_db: str) -> None:
    results = await asyncio.gather(*(apply_migrations(scratch_db) for _ in range(3)))
    applied = [name for r in results for name in r]
    assert sorted(applied) == [m.name for m in load_migrations()]  # each exactly once, no errors
    assert await _tables(scratch_db) == EXPECTED_TABLES


async def test_edited_migration_is_refused(scratch_db: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    await apply_migrations(scratch_db, sql_dir)
    first = sorted(sql_dir.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(StoreError, match="changed after it was applied"):
        await apply_migrations(scratch_db, sql_dir)


async def test_failing_migration_rolls_back_and_stops(scratch_db: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "001_ok.sql").write_text("CREATE TABLE t_ok (id int PRIMARY KEY);")
    (sql_dir / "002_bad.sql").write_text("CREATE TABLE t_half (id int); CREATE TABLE t_bad (id int KEY);")
    (sql_dir / "003_later.sql").write_text("CREATE TABLE t_later (id int);")
    with pytest.raises(StoreError, match="002_bad.sql failed"):
        await apply_migrations(scratch_db, sql_dir)
    assert await _tables(scratch_db) == {"schema_migrations", "t_ok"}  # t_half rolled back, 003 not tried
    (sql_dir / "002_bad.sql").write_text("CREATE TABLE t_fixed (id int);")
    assert await apply_migrations(scratch_db, sql_dir) == ["002_bad.sql", "003_later.sql"]


@pytest.mark.parametrize("bad_name", ["1_short.sql", "001-dash.sql", "001_UPPER.sql"])
def test_bad_migration_file_names_are_refused(tmp_path: Path, bad_name: str) -> None:
    (tmp_path / bad_name).write_text("SELECT 1;")
    with pytest.raises(StoreError, match="001_name.sql"):
        load_migrations(tmp_path)


async def test_unique_keys_make_inserts_idempotent(scratch_db: str) -> None:
    await apply_migrations(scratch_db)
    conn = await asyncpg.connect(scratch_db)
    try:
        for _ in range(2):
            await conn.execute(
                "INSERT INTO fills (exec_id, client_order_id, symbol, side, qty, px, cum_qty, ts_ns, stream_id) "
                "VALUES ('x1', 'o1', 'AAPL', 'BUY', 1, 2, 1, 3, '1-0') ON CONFLICT DO NOTHING"
            )
            await conn.execute(
                "INSERT INTO failover_events (role, epoch, to_name, ts, stream_id) "
                "VALUES ('engine', 4, 'engine:b', now(), '2-0') ON CONFLICT DO NOTHING"
            )
        assert await conn.fetchval("SELECT count(*) FROM fills") == 1
        assert await conn.fetchval("SELECT count(*) FROM failover_events") == 1
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO circuit_breaker_state (name, state) VALUES ('b', 'SIDEWAYS')")
    finally:
        await conn.close()


async def test_oauth_tokens_are_stored_encrypted(scratch_db: str) -> None:
    await apply_migrations(scratch_db)
    old_key, new_key = TokenVault.new_key(), TokenVault.new_key()
    vault = TokenVault({"k1": old_key}, "k1")
    token = b"schwab-refresh-token-SECRET-0123456789"
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    conn = await asyncpg.connect(scratch_db)
    try:
        await store_token(conn, vault, "schwab", "acct-1", token, expires)
        row = await conn.fetchrow("SELECT * FROM oauth_tokens")
        assert token not in bytes(row["ciphertext"]) and b"SECRET" not in bytes(row["ciphertext"])
        assert await load_token(conn, vault, "schwab", "acct-1") == (token, expires)
        assert await load_token(conn, vault, "schwab", "nobody") is None
        # rotation: a vault holding both keys opens the old row and seals new ones with the new key
        rotated = TokenVault({"k1": old_key, "k2": new_key}, "k2")
        assert (await load_token(conn, rotated, "schwab", "acct-1"))[0] == token
        await store_token(conn, rotated, "schwab", "acct-1", token + b"2", expires)
        assert await conn.fetchval("SELECT key_id FROM oauth_tokens") == "k2"
        # a ciphertext moved to another row does not open
        await conn.execute("INSERT INTO oauth_tokens SELECT 'schwab', 'acct-2', key_id, nonce, ciphertext, expires_at FROM oauth_tokens")
        with pytest.raises(StoreError, match="does not authenticate"):
            await load_token(conn, rotated, "schwab", "acct-2")
        with pytest.raises(StoreError, match="no key"):
            await load_token(conn, vault, "schwab", "acct-1")  # vault without k2
    finally:
        await conn.close()
