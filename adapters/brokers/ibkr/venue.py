"""The IBKR venue: `node.venue.Venue` over TWS / IB Gateway, hosted by the broker adapter.

The session (`client.py`) lives on an asyncio loop in a worker thread; `submit` / `cancel` /
`replace` hand the command to that loop and return at once; its reports come back through the
inproc socket the adapter polls (`worker_venue.WorkerVenue`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import threading

import zmq
from ib_async import util as ib_util

from adapters.brokers.ibkr import parsing
from adapters.brokers.ibkr.client import IbkrSession
from adapters.brokers.worker_venue import WorkerVenue
from node.config import IbkrConfig
from node.errors import BrokerError
from node.instruments import DEFAULT_MULTIPLIERS, Multipliers
from node.messages import ExecutionReport, OrderIntent, encode
from node.reasons import Reason
from node.reconcile import BrokerBook
from node.venue import VenueHealth

log = logging.getLogger("nae.broker.ibkr")


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def ib_loop() -> asyncio.AbstractEventLoop:
    """The one asyncio loop every IBKR session of the process runs on (its own thread, started once).

    ib_async caches the first event loop it sees, process-wide (`util.getLoop` is a
    `functools.cache`), so its sessions cannot each have a loop of their own: they share this one.
    """
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def main() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=main, name="ibkr-loop", daemon=True).start()
            ready.wait(10)

            def adopt() -> None:  # ib_async's cached loop must be this one
                ib_util.getLoop.cache_clear()
                ib_util.getLoop()

            asyncio.run_coroutine_threadsafe(_call_on_loop(adopt), loop).result(10)
            _LOOP = loop
        return _LOOP


async def _call_on_loop(fn) -> None:
    fn()


class IbkrVenue(WorkerVenue):
    def __init__(self, cfg: IbkrConfig, multipliers: Multipliers | None = None) -> None:
        """`multipliers`: the node's (`node.instruments.node_multipliers`, its risk config), for an
        option position whose contract TWS names no multiplier for."""
        super().__init__("ibkr")
        self.cfg = cfg
        self.multipliers = multipliers if multipliers is not None else DEFAULT_MULTIPLIERS
        self.session: IbkrSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._running: concurrent.futures.Future | None = None

    def open(self, ctx: zmq.Context) -> None:
        endpoint = self._bind(ctx)
        self._loop = ib_loop()
        started = asyncio.run_coroutine_threadsafe(self._start(ctx, endpoint), self._loop)
        self._running = started.result(10)

    def close(self) -> None:
        if self._running is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            try:
                self._running.result(10)
            except Exception:  # noqa: BLE001 - closing: the session's end is logged, never raised here
                log.exception("ibkr: session ended with an error")
            self._running = None
        self._unbind()

    async def _start(self, ctx: zmq.Context, endpoint: str) -> concurrent.futures.Future:
        out = ctx.socket(zmq.PUSH)  # used on the loop thread only
        out.setsockopt(zmq.LINGER, 0)
        out.connect(endpoint)

        def emit(rep: ExecutionReport) -> None:
            out.send(encode(rep))

        self._stop = asyncio.Event()
        self.session = IbkrSession(self.cfg, emit, multipliers=self.multipliers)

        async def run() -> None:
            try:
                await self.session.run(self._stop)
            finally:
                out.close(0)

        return asyncio.run_coroutine_threadsafe(run(), asyncio.get_running_loop())

    def _call(self, fn, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    # ---------------------------------------------------------------- the venue interface

    def submit(self, intent: OrderIntent, now_ns: int) -> None:
        self._call(self.session.submit, intent)

    def cancel(self, client_order_id: str, now_ns: int) -> None:
        self._call(self.session.cancel, client_order_id)

    def replace(self, client_order_id: str, intent: OrderIntent, now_ns: int) -> None:
        self._call(self.session.replace, client_order_id, intent)

    def health(self, now_ns: int) -> VenueHealth:
        s = self.session
        if s is None or not s.connected:
            return VenueHealth(ok=False, reason=Reason.NO_CONNECTION.value, detail="not connected to TWS / IB Gateway")
        if parsing.in_window(dt.datetime.fromtimestamp(now_ns / 1e9, dt.timezone.utc), self.cfg.windows):
            return VenueHealth(ok=False, reason=Reason.BROKER_MAINTENANCE.value, detail="in IBKR's maintenance window")
        return VenueHealth(ok=True)

    def account_book(self, timeout_s: float = 30.0) -> BrokerBook:
        """TWS's own view of the account, for the reconciler: asked on the session's loop, waited for
        in the caller's thread (never the adapter's loop)."""
        if self._loop is None or self.session is None:
            raise BrokerError("ibkr: the venue is not open", Reason.NO_CONNECTION, retriable=True)
        return asyncio.run_coroutine_threadsafe(self.session.account_book(), self._loop).result(timeout_s)

    def account_positions(self) -> dict[str, float]:
        s = self.session
        return {} if s is None else dict(s.positions)

    def commissions(self) -> dict[str, float]:
        """Commission per execution (stem), as TWS reported it."""
        s = self.session
        return {} if s is None else dict(s.commissions)

    def stats(self) -> dict:
        s = self.session
        if s is None:
            return {}
        return {"connected": s.connected, "connects": s.connects, "swept_fills": s.swept_fills,
                "corrections": s.corrections, "orphan_fills": s.orphan_fills, "refused_window": s.refused_window,
                "adopted": s.adopted, "foreign_open": s.foreign_open, "cancel_foreign": s.cancel_foreign}
