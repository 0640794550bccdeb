"""The node as a benchmark target: a whole node on Ray (embedded or REDIS_URL Redis), driven over
ZeroMQ by the asyncio client, exactly as Optimus drives it.

Signals are prepared outside the timed part (payload bytes ready; signing happens at send time,
as it must: the signature covers the send timestamp). Fill latency is signal sent -> FILL event
received on the events feed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid

import msgspec
import numpy as np

from bench.user_path import STREAMS, drop_node_keys
from node.client import AsyncExecutionClient
from node.config import NodeConfig, load_config
from node.messages import ExecKind, Signal, encode

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "TSLA", "QQQ")


class NodeTarget:
    name = "node"

    def __init__(self, n_max: int = 200_000) -> None:
        self._n_max = n_max
        self._runtime = None
        self._registry: dict[str, str] = {}
        self._redis_url = ""
        self._ledger = OwnLedger()
        self._client: AsyncExecutionClient | None = None
        self._payloads: list[tuple[str, bytes]] = []
        self._index: dict[str, int] = {}
        self._sent_ns = np.zeros(n_max, dtype=np.int64)
        self._fill_ns = np.zeros(n_max, dtype=np.int64)
        self._listener: asyncio.Task | None = None
        self._accepted = 0
        self._rejected = 0
        self._errors = 0
        self._fills = 0
        self._dup_fills = 0

    async def start(self) -> None:
        from node.cli import demo_config
        from node.runtime import NodeRuntime, quiet

        cfg = demo_config(load_config(None))
        node_id = "bench-" + uuid.uuid4().hex[:8]  # its own Redis keys and streams: nothing shared with other nodes
        cfg = msgspec.structs.replace(cfg, node_id=node_id, storage=msgspec.structs.replace(cfg.storage, **{
            k: node_id + "." + getattr(cfg.storage, k) for k in STREAMS}))
        cfg = await self._ledger.take(cfg)
        self._runtime = NodeRuntime(cfg, quiet)
        registry = await asyncio.get_running_loop().run_in_executor(None, self._runtime.start)
        self._registry, self._redis_url = registry, cfg.storage.redis_url or ""
        key_id, secret = next(iter(cfg.signing.keys.items()))
        self._client = AsyncExecutionClient(registry["intake"], key_id, secret, timeout_s=10.0)
        await self._client.subscribe(kinds=[ExecKind.FILL])
        await asyncio.sleep(0.3)
        run = uuid.uuid4().hex[:8]
        now = time.time()
        for i in range(self._n_max):
            rid = "b" + run + "-" + str(i)
            sig = Signal(
                request_id=rid, strategy_id="bench", timestamp=now, symbol=SYMBOLS[i % len(SYMBOLS)],
                action="BUY" if i % 2 else "SELL", quantity=float(1 + i % 100),
            )
            self._payloads.append((rid, encode(sig)))
            self._index[rid] = i
        self._listener = asyncio.get_running_loop().create_task(self._listen())


    async def _listen(self) -> None:
        client = self._client
        index, fill_ns = self._index, self._fill_ns
        while True:
            ev = await client.next_event(0.5)
            if ev is None or ev.kind is not ExecKind.FILL:
                continue
            i = index.get(ev.request_id)
            if i is None:
                continue
            if fill_ns[i]:
                self._dup_fills += bool(ev.exec_id)  # no exec id: a state restated (RECOVERED), not a fill
                continue
            fill_ns[i] = time.perf_counter_ns()
            self._fills += 1

    async def send(self, i: int) -> None:
        rid, payload = self._payloads[i]
        self._sent_ns[i] = time.perf_counter_ns()
        reply = await self._client.send_payload(rid, payload)
        if reply.status == "ACCEPTED":
            self._accepted += 1
        elif reply.status == "REJECTED":
            self._rejected += 1
            raise RuntimeError("rejected: " + ",".join(reply.reasons))
        else:
            self._errors += 1
            raise RuntimeError("error: " + reply.detail)

    async def wait_fills(self, timeout_s: float, indices: range | None = None) -> np.ndarray:
        """Fill latencies (ns) of the signals in `indices` (default: all sent so far)."""
        sent = self._sent_ns
        idx = np.asarray(indices if indices is not None else np.nonzero(sent)[0])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and np.count_nonzero(self._fill_ns[idx]) < len(idx):
            await asyncio.sleep(0.05)
        filled = idx[self._fill_ns[idx] > 0]
        return self._fill_ns[filled] - sent[filled]

    def stage_fields(self) -> dict:
        """The node's per-stage histograms, merged across actors (a Ray stats call: never per signal)."""
        from node.stages import stage_fields

        return stage_fields(self._runtime.stats())

    def processes(self) -> dict[int, str]:
        """pid -> role of the node's processes (bench.cpu_budget): Ray runs under this process here."""
        from bench.cpu_budget import node_processes

        return node_processes(os.getpid(), self._registry, self._redis_url, self._ledger.database)

    def counts(self) -> dict:
        sent = int(np.count_nonzero(self._sent_ns))
        return {
            "sent": sent,
            "accepted": self._accepted,
            "rejected": self._rejected,
            "lost": self._accepted - self._fills,
            "duplicates": self._dup_fills,  # a second fill for one signal (the client drops exec ids it delivered)
            "late_replies": self._client.unmatched if self._client else 0,  # answers to sends timed out already
        }

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        if self._client is not None:
            await self._client.close()
        if self._runtime is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._runtime.stop)
        if self._runtime is not None:
            drop_node_keys(self._runtime.cfg.storage.redis_url, self._runtime.cfg.node_id)
        await self._ledger.release()


class OwnLedger:
    """A bench node's own ledger, so its start-up reconciliation compares this run's ledger with this
    run's paper account (both start empty under its fresh node id): a scratch database on the
    configured PostgreSQL, else the embedded servers under a temporary data folder. `release` drops
    the database (the folder goes with its servers)."""

    def __init__(self) -> None:
        self._db: tuple[str, str] | None = None  # (server URL, scratch database name)
        self._dir: tempfile.TemporaryDirectory | None = None

    async def take(self, cfg: NodeConfig) -> NodeConfig:
        if cfg.storage.database_url:
            from node.migrations import create_database, database_url_for

            server = cfg.storage.database_url
            self._db = server, (await create_database(server, "nae_bench_"))[0]
            return msgspec.structs.replace(cfg, storage=msgspec.structs.replace(
                cfg.storage, database_url=database_url_for(*self._db)))
        self._dir = tempfile.TemporaryDirectory(prefix="nae-bench-")
        return msgspec.structs.replace(cfg, data_dir=self._dir.name)

    @property
    def database(self) -> str:
        """The scratch database's name ("" under the embedded servers)."""
        return self._db[1] if self._db is not None else ""

    async def release(self) -> None:
        if self._db is not None:
            from node.migrations import drop_database

            await drop_database(*self._db)
            self._db = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


async def make_node_target(quick: bool) -> NodeTarget:
    return NodeTarget(n_max=20_000 if quick else 200_000)
