"""Health and readiness, from what the node can see: the actors' stats and probes of its stores.

- live: the API process answers (no dependency checked: a liveness probe that fails on a Redis
  outage only gets a healthy process restarted);
- ready (may take signals): the validator and the data plane are up, the signal log can be
  written (a write probe on the same Redis succeeded and the validator's appends are not failing),
  and the ledger is no further behind than `max_ledger_lag` entries;
- health: every component with its own state and detail, Redis and PostgreSQL included.

`StoreProbe` (the I/O: one Redis write probe, XINFO GROUPS of the ledger's streams, a PostgreSQL
`SELECT 1`, each with a deadline) answers at most once per `min_interval_s`, so a scraper that
polls hard never loads the stores; `assess()` is pure and tested without services.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping

UP = "up"
DOWN = "down"
_DATA_PLANE = ("validator", "broker:", "engine:")
_NOT_ACTORS = ("supervisor", "engine", "broker", "api")


def actors_of(stats: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{role: {"status": "up"|"down", "detail"?}} for every actor in one stats snapshot."""
    out: dict[str, dict[str, Any]] = {}
    for role, values in stats.items():
        if role in _NOT_ACTORS:
            continue
        if not isinstance(values, Mapping) or "down" in values:
            detail = str(values.get("down", "")) if isinstance(values, Mapping) else "no stats"
            out[role] = {"status": DOWN, "detail": detail}
        else:
            entry: dict[str, Any] = {"status": UP}
            if values.get("last_error"):
                entry["last_error"] = values["last_error"]
            out[role] = entry
    return out


def assess(stats: Mapping[str, Any], stores: Mapping[str, Any], appends_failing: bool,
           max_ledger_lag: int) -> tuple[bool, dict[str, Any], list[str]]:
    """(ready, components, why not ready) from one stats snapshot and one store probe."""
    components: dict[str, Any] = dict(actors_of(stats))
    components.update(stores)
    why: list[str] = []
    plane = {r: c for r, c in components.items() if r.startswith(_DATA_PLANE)}
    if "validator" not in plane:
        why.append("validator: not running")
    why += [role + ": down" for role, c in sorted(plane.items()) if c["status"] != UP]
    redis = stores.get("redis", {})
    if redis.get("status") != UP:
        why.append("signal log: Redis cannot be written (" + str(redis.get("detail", "no probe")) + ")")
    elif appends_failing:
        why.append("signal log: the validator's appends are failing")
    ledger = stores.get("ledger_lag")
    if ledger is not None and ledger.get("status") == UP and ledger.get("entries", 0) > max_ledger_lag:
        why.append("ledger: %d entries behind (bound %d)" % (ledger["entries"], max_ledger_lag))
        ledger["status"] = "lagging"
    return not why, components, why


class AppendWatch:
    """Are the validator's appends failing now? True when `store_failures` grew since the last
    look less than `hold_s` ago (one failed append keeps /readyz at 503 for `hold_s`)."""

    def __init__(self, hold_s: float = 5.0) -> None:
        self._hold_s = hold_s
        self._seen = -1
        self._failed_at = -1e18

    def failing(self, validator: Any, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        failures = validator.get("store_failures", 0) if isinstance(validator, Mapping) else 0
        if self._seen >= 0 and failures > self._seen:
            self._failed_at = now
        self._seen = failures
        return now - self._failed_at < self._hold_s


class StoreProbe:
    """Probes Redis (a real write, like the signal log's XADD: refused under MISCONF or OOM) and the
    ledger's lag on it, and PostgreSQL (`SELECT 1`). Runs on the caller's event loop."""

    def __init__(self, redis_url: str, database_url: str | None, probe_key: str, streams: list[str],
                 ledger_group: str | None, timeout_s: float = 1.0, min_interval_s: float = 1.0) -> None:
        self._redis_url = redis_url
        self._database_url = database_url
        self._key = probe_key
        self._streams = streams
        self._group = ledger_group
        self._timeout_s = timeout_s
        self._min_interval_s = min_interval_s
        self._redis: Any = None
        self._last: tuple[float, dict[str, Any]] = (-1e18, {})
        self._lock = asyncio.Lock()

    async def check(self) -> dict[str, Any]:
        async with self._lock:
            at, last = self._last
            if time.monotonic() - at < self._min_interval_s:
                return last
            out = {"redis": await self._redis_state()}
            if self._group is not None:
                out["ledger_lag"] = await self._lag() if out["redis"]["status"] == UP else {
                    "status": DOWN, "detail": "Redis down"}
            if self._database_url:
                out["postgresql"] = await self._postgres_state()
            self._last = (time.monotonic(), out)
            return out

    async def _redis_state(self) -> dict[str, Any]:
        import redis.asyncio as aioredis

        try:
            if self._redis is None:
                self._redis = aioredis.Redis.from_url(self._redis_url, socket_timeout=self._timeout_s,
                                                      socket_connect_timeout=self._timeout_s)
            t0 = time.perf_counter()
            await asyncio.wait_for(self._redis.set(self._key, str(time.time_ns()), px=60_000), self._timeout_s)
            return {"status": UP, "write_ms": round((time.perf_counter() - t0) * 1e3, 2)}
        except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
            await self._drop_redis()
            return {"status": DOWN, "detail": _one_line(exc)}

    async def _lag(self) -> dict[str, Any]:
        """Entries the ledger has not written yet: per stream, its group's `lag` (never delivered)
        plus `pending` (delivered, not acked)."""
        total, per = 0, {}
        try:
            for stream in self._streams:
                groups = await asyncio.wait_for(self._redis.xinfo_groups(stream), self._timeout_s)
                for g in groups:
                    name = g.get("name")
                    if (name.decode() if isinstance(name, bytes) else name) == self._group:
                        n = int(g.get("lag") or 0) + int(g.get("pending") or 0)
                        per[stream] = n
                        total += n
        except Exception as exc:  # noqa: BLE001 - no stream yet, or Redis gone
            return {"status": DOWN, "detail": _one_line(exc)}
        return {"status": UP, "entries": total, "streams": per}

    async def _postgres_state(self) -> dict[str, Any]:
        import asyncpg

        try:
            conn = await asyncio.wait_for(asyncpg.connect(self._database_url, timeout=self._timeout_s),
                                          self._timeout_s * 2)
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._timeout_s)
            finally:
                await conn.close()
            return {"status": UP}
        except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
            return {"status": DOWN, "detail": _one_line(exc)}

    async def _drop_redis(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    async def close(self) -> None:
        await self._drop_redis()


def _one_line(exc: BaseException) -> str:
    from node.logs import mask

    return mask(type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0][:200])
