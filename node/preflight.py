"""Start-up checks: is Redis / PostgreSQL reachable at the configured URL, and does Redis persist?

Each check answers within `timeout_s` (2 s by default) and raises `StoreError` with one clear line
naming the URL (password masked) and the cause, so the CLI can print it instead of a traceback.
`redis_persistence` reads Redis's AOF settings: a signal is ACKed after its append to Redis, so a
Redis without `appendonly yes` would keep ACKed signals in memory only (`require_persistent_redis`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from nae_client.fallback import mask_url  # defined once, with the client
from node.errors import StoreError

DEFAULT_TIMEOUT_S = 2.0


def _cause(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no answer (timed out)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return type(exc).__name__ + (": " + text[:200] if text else "")


async def check_redis(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """PING Redis at `url`. Raises `StoreError("Redis at <url> is unreachable: <cause>")`."""
    try:
        client = aioredis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    except (ValueError, RedisError) as exc:
        raise StoreError("Redis URL " + mask_url(url) + " is invalid: " + _cause(exc)) from None
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        raise StoreError("Redis at " + mask_url(url) + " is unreachable: " + _cause(exc)) from None
    finally:
        try:
            await client.aclose()
        except (RedisError, OSError):
            pass


class RedisPersistence(msgspec.Struct, frozen=True, kw_only=True):
    """What Redis says about its durability: AOF on/off and its fsync policy ("" = not told)."""

    appendonly: bool
    appendfsync: str = ""

    def describe(self) -> str:
        if not self.appendonly:
            return "appendonly no (ACKed signals live in memory only)"
        return "appendonly yes, appendfsync " + (self.appendfsync or "unknown")


async def redis_persistence(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> RedisPersistence:
    """Redis's AOF setting (INFO persistence, which managed Redis services answer too) and its fsync
    policy (CONFIG GET appendfsync; "" where CONFIG is disabled). Raises `StoreError` like
    `check_redis`."""
    try:
        client = aioredis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    except (ValueError, RedisError) as exc:
        raise StoreError("Redis URL " + mask_url(url) + " is invalid: " + _cause(exc)) from None
    try:
        info = await asyncio.wait_for(client.info("persistence"), timeout_s)
        fsync = ""
        try:
            got = await asyncio.wait_for(client.config_get("appendfsync"), timeout_s)
            answer: dict[Any, Any] = got if isinstance(got, dict) else {}
            value = answer.get("appendfsync", answer.get(b"appendfsync", ""))
            fsync = value.decode() if isinstance(value, bytes) else str(value)
        except RedisError:
            fsync = ""  # CONFIG renamed or refused (managed Redis): the policy is not told
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        raise StoreError("Redis at " + mask_url(url) + " is unreachable: " + _cause(exc)) from None
    finally:
        try:
            await client.aclose()
        except (RedisError, OSError):
            pass
    return RedisPersistence(appendonly=str(info.get("aof_enabled", "0")) == "1", appendfsync=fsync)


def require_persistent_redis(url: str, persistence: RedisPersistence, allow_volatile: bool) -> None:
    """Refuse (one line, `StoreError`) a Redis without AOF unless the config allows it."""
    if persistence.appendonly or allow_volatile:
        return
    raise StoreError(
        "Redis at " + mask_url(url) + " has no persistence (appendonly no): an ACKed signal would live in "
        "memory only; turn on appendonly, or set [storage] allow_volatile_redis = true to accept that"
    )


async def check_postgres(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Connect to PostgreSQL at `url` and run SELECT 1. Raises `StoreError("PostgreSQL at <url> is
    unreachable: <cause>")` (refused, timed out, bad password, unknown database, ...)."""
    conn = None
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url, timeout=timeout_s), timeout_s)
        await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout_s)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError, ValueError) as exc:
        raise StoreError("PostgreSQL at " + mask_url(url) + " is unreachable: " + _cause(exc)) from None
    finally:
        if conn is not None:
            conn.terminate()


async def check_stores(redis_url: str, database_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Both checks at once; raises the first `StoreError` (Redis first when both fail)."""
    results = await asyncio.gather(
        check_redis(redis_url, timeout_s), check_postgres(database_url, timeout_s), return_exceptions=True
    )
    for res in results:
        if isinstance(res, BaseException):
            raise res
