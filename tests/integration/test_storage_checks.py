"""Start-up storage checks: a Redis without persistence is refused unless the config allows it (and
its fsync policy is reported); the embedded Redis runs `appendfsync always` when asked; a node
starts with PostgreSQL down, runs degraded, and its ledger catches up when PostgreSQL returns."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pytest

from node.client import ExecutionClient
from node.embedded import EmbeddedServices
from node.errors import StoreError
from node.preflight import RedisPersistence, redis_persistence, require_persistent_redis
from node.runtime import NodeRuntime, quiet


def test_a_redis_without_persistence_is_refused_by_default_in_one_line(make_config, volatile_redis):
    seen = asyncio.run(redis_persistence(volatile_redis.url))
    assert seen == RedisPersistence(appendonly=False, appendfsync="everysec")
    cfg = make_config()
    cfg = msgspec.structs.replace(cfg, storage=msgspec.structs.replace(
        cfg.storage, redis_url=volatile_redis.url, allow_volatile_redis=False))
    runtime = NodeRuntime(cfg, quiet)
    with pytest.raises(StoreError) as info:
        runtime.start()
    text = str(info.value)
    assert "\n" not in text and "appendonly no" in text and "allow_volatile_redis" in text
    assert runtime.supervisor is None and not runtime._started_ray  # refused before anything started


@pytest.mark.parametrize("persistence, allowed, refused", [
    (RedisPersistence(appendonly=True, appendfsync="everysec"), False, False),
    (RedisPersistence(appendonly=False), True, False),
    (RedisPersistence(appendonly=False), False, True),
])
def test_the_persistence_rule(persistence, allowed, refused):
    if refused:
        with pytest.raises(StoreError):
            require_persistent_redis("redis://:secret@h:1/0", persistence, allowed)
    else:
        require_persistent_redis("redis://:secret@h:1/0", persistence, allowed)


def test_embedded_redis_runs_appendfsync_always_when_asked(tmp_path, database_url):
    services = EmbeddedServices(tmp_path / "data", database_url=database_url, redis_appendfsync="always")
    redis_url, _ = services.start()
    try:
        assert asyncio.run(redis_persistence(redis_url)) == RedisPersistence(appendonly=True, appendfsync="always")
    finally:
        services.stop()


class _Proxy:
    """A TCP forwarder on a fixed port: PostgreSQL 'comes back' when it starts."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def start(self) -> None:
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._server.close()


def test_a_node_starts_with_postgres_down_and_its_ledger_catches_up(ray_session, make_config, database_url):
    from actors.ledger import ledger_fills
    from node.migrations import create_database, drop_database

    name, url = asyncio.run(create_database(database_url, "nae_test_"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    real = urlsplit(url)
    down_url = urlunsplit(real._replace(netloc=real.netloc.replace(
        "%s:%d" % (real.hostname, real.port or 5432), "127.0.0.1:%d" % port)))
    assert str(port) in down_url
    runtime = NodeRuntime(make_config(database_url_override=down_url), quiet)
    proxy = _Proxy(port, (real.hostname, real.port or 5432))
    try:
        runtime.start()  # PostgreSQL is down: the node starts anyway (and not HALTED: signals are ACCEPTED)
        assert runtime.degraded and "PostgreSQL" in runtime.degraded[0]
        assert "reconciler" not in runtime.stats()  # its start-up run waits for PostgreSQL
        assert runtime.stats()["supervisor"]["degraded"]  # visible in stats (and so in `execnode status`)
        key_id, secret = next(iter(runtime.cfg.signing.keys.items()))
        with ExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=5.0) as client:
            replies = [client.send_signal({"strategy_id": "pgdown", "symbol": "AAPL", "action": "BUY",
                                           "quantity": 1.0}) for _ in range(20)]
        assert all(r.status == "ACCEPTED" for r in replies), replies
        venue = {f.exec_id for f in runtime.call("broker", "fills")}
        proxy.start()  # PostgreSQL is back
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                booked = {r["exec_id"] for r in asyncio.run(ledger_fills(url))}
            except Exception:  # noqa: BLE001 - the ledger may not have made its tables yet
                booked = set()
            if venue and venue <= booked:
                break
            time.sleep(0.5)
        assert venue and venue <= booked, "%d of %d fills in the ledger" % (len(venue & booked), len(venue))
        assert not runtime.stats()["supervisor"]["degraded"]
        deadline = time.monotonic() + 30  # the start-up reconciliation, deferred, runs once PostgreSQL is back
        while "reconciler" not in runtime.stats() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "reconciler" in runtime.stats()
    finally:
        runtime.stop()
        proxy.close()
        asyncio.run(drop_database(database_url, name))
