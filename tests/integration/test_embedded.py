"""node.embedded (embedded Redis + PostgreSQL under a data folder) and node.preflight (start-up
checks that name the URL)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from node.embedded import EmbeddedServices
from node.errors import StoreError
from node.migrations import apply_migrations
from node.preflight import check_postgres, check_redis, check_stores, mask_url

MACHINE_PG = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def server_tree(pids: list[int]) -> list[psutil.Process]:
    """The server processes and all their children."""
    procs = []
    for pid in pids:
        p = psutil.Process(pid)
        procs.append(p)
        procs.extend(p.children(recursive=True))
    return procs


def leftovers(data_dir: Path) -> list[str]:
    """Any redis-server or postgres process that still mentions `data_dir`."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(data_dir) in cmd and ("redis" in cmd or "postgres" in cmd):
            found.append(str(p.pid) + " " + cmd)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def use_postgres(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO kv VALUES ('a', 'b') ON CONFLICT DO NOTHING")
        return [r["v"] for r in await conn.fetch("SELECT v FROM kv")]
    finally:
        await conn.close()


async def test_start_use_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    services = EmbeddedServices(data_dir)
    redis_url, database_url = services.start()
    try:
        assert redis_url.startswith("unix://") and database_url.startswith("postgresql://")
        procs = server_tree(services.server_pids())
        assert len(services.server_pids()) == 2 and len(procs) > 2  # postmaster has its workers
        r = redis.Redis.from_url(redis_url)
        r.set("k", "v")
        r.xadd("s", {b"e": b"1"})
        assert r.get("k") == b"v" and r.xlen("s") == 1
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
        r.close()
        await check_stores(redis_url, database_url)
        assert await use_postgres(database_url) == ["b"]
        assert await apply_migrations(database_url)  # the node's schema works on the embedded server
    finally:
        services.stop()
    assert services.server_pids() == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
    assert leftovers(data_dir) == []
    assert (data_dir / "redis" / "appendonly.aof").exists()
    with pytest.raises(StoreError, match="unreachable"):
        await check_redis(redis_url)
    with pytest.raises(StoreError, match="unreachable"):
        await check_postgres(database_url)


async def test_data_survives_a_restart_and_a_running_server_is_adopted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = EmbeddedServices(data_dir)
    redis_url, database_url = first.start()
    try:
        redis.Redis.from_url(redis_url).set("kept", "yes")
        await use_postgres(database_url)
        # a node killed without stop() left its servers running: the next start adopts them
        second = EmbeddedServices(data_dir)
        assert second.start() == (redis_url, database_url)
        assert second.server_pids() == first.server_pids()
    finally:
        first.stop()
    assert leftovers(data_dir) == []
    third = EmbeddedServices(data_dir)
    redis_url, database_url = third.start()
    try:
        assert redis.Redis.from_url(redis_url).get("kept") == b"yes"  # from the AOF
        assert await use_postgres(database_url) == ["b"]
    finally:
        third.stop()
    assert leftovers(data_dir) == []


async def test_configured_urls_are_used_and_nothing_starts(tmp_path: Path) -> None:
    services = EmbeddedServices(tmp_path / "data", redis_url=MACHINE_REDIS, database_url=MACHINE_PG)
    assert services.start() == (MACHINE_REDIS, MACHINE_PG)
    assert services.server_pids() == []
    services.stop()
    only_pg = EmbeddedServices(tmp_path / "data2", redis_url=MACHINE_REDIS)
    redis_url, database_url = only_pg.start()
    try:
        assert redis_url == MACHINE_REDIS and database_url != MACHINE_PG
        assert len(only_pg.server_pids()) == 1
        await check_postgres(database_url)
    finally:
        only_pg.stop()
    assert leftovers(tmp_path / "data2") == []


async def test_a_deep_data_dir_gets_short_socket_paths(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    services = EmbeddedServices(deep)
    redis_url, database_url = services.start()
    try:
        assert len(redis_url) < 120 and str(deep) not in database_url
        await check_stores(redis_url, database_url)
    finally:
        services.stop()
    assert leftovers(deep) == []


# ---------------------------------------------------------------- preflight


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://user:pw@db:5432/nae", "postgresql://user:***@db:5432/nae"),
        ("postgresql://user@db/nae?password=pw&sslmode=require", "postgresql://user@db/nae?password=***&sslmode=require"),
        ("unix:///tmp/redis.sock?db=0", "unix:///tmp/redis.sock?db=0"),
        ("postgresql://postgres@/postgres?host=/tmp/pg", "postgresql://postgres@/postgres?host=/tmp/pg"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url) and ":pw@" not in mask_url(url)


async def test_preflight_passes_on_the_machine_services() -> None:
    await check_stores(MACHINE_REDIS, MACHINE_PG)


@pytest.mark.parametrize(
    ("check", "url_template", "pattern"),
    [
        (check_redis, "redis://:hunter2@127.0.0.1:{port}/0", r"Redis at redis://:\*\*\*@127\.0\.0\.1:\d+/0 is unreachable"),
        (check_postgres, "postgresql://nae:hunter2@127.0.0.1:{port}/nae", r"PostgreSQL at postgresql://nae:\*\*\*@127\.0\.0\.1:\d+/nae is unreachable"),
        (check_postgres, "postgresql://postgres@127.0.0.1:5432/no_such_db_{port}", r"no_such_db_\d+ is unreachable: InvalidCatalogNameError"),
        (check_redis, "nonsense://{port}", r"Redis URL nonsense://\d+ is invalid"),
    ],
)  # fmt: skip
async def test_preflight_names_the_url_and_hides_the_password(check, url_template: str, pattern: str) -> None:
    url = url_template.format(port=free_port())
    if "5432" in url and MACHINE_PG != "postgresql://postgres@127.0.0.1:5432/postgres":
        pytest.skip("needs the machine's PostgreSQL at 127.0.0.1:5432")
    with pytest.raises(StoreError, match=pattern) as info:
        await check(url)
    assert "hunter2" not in str(info.value)


async def test_preflight_times_out_on_a_silent_server() -> None:
    """A server that accepts and never answers: the check gives up after its timeout."""
    served: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for check, url in ((check_redis, "redis://127.0.0.1:" + str(port)), (check_postgres, "postgresql://u@127.0.0.1:" + str(port) + "/d")):
            with pytest.raises(StoreError, match="127.0.0.1:" + str(port) + r".* unreachable: no answer \(timed out\)"):
                await check(url, timeout_s=0.3)
    finally:
        for w in served:
            w.close()
        server.close()
        await server.wait_closed()
