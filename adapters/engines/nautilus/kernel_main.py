"""The Nautilus engine child process: one TradingNode on this process's main thread and loop.

Run as `python -m adapters.engines.nautilus.kernel_main <control_endpoint> <broker_endpoint> <config json>`.
The child connects a PAIR socket to the host's control endpoint, builds the node (bridge exec
client + bridge strategy), starts it, binds its PULL (intake) and PUB (events) sockets and sends
`KernelReady`; a start-up failure is sent as `KernelFailed` before it exits 2.

Commands on the control socket are the typed structs of `control.py` (`StopKernel`: clean stop,
`node.stop_async` then `kernel.dispose`; `AskKernelStats`; `SetKernelEpoch`; `PromoteKernel`: a
standby starts submitting once the first K intake frames and Nautilus's queues are processed,
answered with the promotion's counts or `KernelFailed`; `DemoteKernel`: hold and follow again).
The child also stops by itself when its parent process is gone, so a killed host leaves no orphan.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback

import zmq
import zmq.asyncio

from adapters.engines.nautilus.config import NautilusEngineConfig, decode_config, rate_string
from adapters.engines.nautilus.control import (
    AskKernelStats,
    CancelOpenOrders,
    DemoteKernel,
    KernelCanceled,
    KernelDemoted,
    KernelEpochSet,
    KernelFailed,
    KernelPromoted,
    KernelReady,
    KernelStatsReport,
    KernelStopped,
    PromoteKernel,
    SetKernelEpoch,
    StopKernel,
    command_decoder,
    encode_control,
)
from node.messages import accepted_decoder
from node.stats import KernelStats

_INTAKE_BATCH = 1_024


def _node_config(cfg: NautilusEngineConfig, broker_endpoint: str):  # noqa: ANN202 - Nautilus type
    from nautilus_trader.config import (
        CacheConfig,
        LiveExecEngineConfig,
        LiveRiskEngineConfig,
        LoggingConfig,
        TradingNodeConfig,
    )

    from adapters.engines.nautilus.bridge_client import BridgeExecClientConfig

    notional = {}
    if cfg.max_notional_per_order_usd:
        notional = {cfg.venue: cfg.max_notional_per_order_usd}
    return TradingNodeConfig(
        trader_id=cfg.trader_id,
        logging=LoggingConfig(log_level=cfg.log_level, bypass_logging=cfg.log_level == "OFF"),
        cache=CacheConfig(),
        risk_engine=LiveRiskEngineConfig(
            max_order_submit_rate=rate_string(cfg.max_order_submit_count, cfg.max_order_submit_window_ms),
            max_notional_per_order=notional,
        ),
        exec_engine=LiveExecEngineConfig(
            reconciliation=True,
            inflight_check_interval_ms=cfg.inflight_check_interval_ms,
            inflight_check_threshold_ms=cfg.inflight_check_threshold_ms,
            inflight_check_retries=cfg.inflight_check_retries,
            reconciliation_startup_delay_secs=cfg.reconciliation_startup_delay_ms / 1000.0,
        ),
        exec_clients={
            cfg.venue: BridgeExecClientConfig(
                broker_endpoint=broker_endpoint,
                engine_name=cfg.engine_name,
                epoch=cfg.epoch,
                group=cfg.group,
                venue=cfg.venue,
                symbols=list(cfg.symbols),
                price_precision=cfg.price_precision,
                starting_cash_usd=cfg.starting_cash_usd,
                query_timeout_ms=cfg.query_timeout_ms,
                role=cfg.role,
                follow_endpoint=cfg.follow_endpoint,
            )
        },
        timeout_connection=30.0,
        timeout_reconciliation=10.0,
        timeout_portfolio=10.0,
        timeout_disconnection=5.0,
        timeout_post_stop=1.0,
    )


def _skip_trade_record(*_args: object) -> None:
    """Stands in for PortfolioAnalyzer.record_trade (per-close pandas concat, O(n) growth)."""


class KernelChild:
    """Builds, runs and stops the node; owns the control, intake and events sockets."""

    def __init__(self, control_endpoint: str, broker_endpoint: str, cfg: NautilusEngineConfig) -> None:
        self._cfg = cfg
        self._broker_endpoint = broker_endpoint
        self._t0 = time.perf_counter()
        self._ctx = zmq.asyncio.Context()
        self._control = self._ctx.socket(zmq.PAIR)
        self._control.setsockopt(zmq.LINGER, 1_000)
        self._control.connect(control_endpoint)
        self._parent = os.getppid()
        self._stopping = False
        self.intake_frames = 0
        self.bad_commands = 0

    async def run(self) -> int:
        try:
            await self._start()
        except Exception as exc:  # noqa: BLE001 - reported to the host, then exit
            await self._control.send(encode_control(KernelFailed(repr(exc) + "\n" + traceback.format_exc())))
            await self._close_sockets()
            return 2
        await self._serve_control()
        return 0

    async def _start(self) -> None:
        from nautilus_trader.live.node import TradingNode

        from adapters.engines.nautilus.bridge_client import BridgeExecClientFactory
        from adapters.engines.nautilus.bridge_strategy import BridgeBook, BridgeStrategy, BridgeStrategyConfig

        cfg = self._cfg
        loop = asyncio.get_running_loop()
        self.node = node = TradingNode(config=_node_config(cfg, self._broker_endpoint), loop=loop)
        host = "tcp://" + cfg.bind_host
        pub_ctx = zmq.Context()
        self._pub_ctx = pub_ctx
        self._pub = pub_ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, 1_000_000)
        events = host + ":" + str(self._pub.bind_to_random_port(host))
        self.book = BridgeBook(self._pub, cancel_timeout_ms=cfg.cancel_timeout_ms)
        self.strategy = BridgeStrategy(
            BridgeStrategyConfig(
                strategy_id="BRIDGE-001",
                venue=cfg.venue,
                price_precision=cfg.price_precision,
                reference_prices=dict(cfg.reference_prices),
                log_events=False,
                log_commands=False,
            ),
            self.book,
        )
        node.trader.add_strategy(self.strategy)
        node.add_exec_client_factory(cfg.venue, BridgeExecClientFactory)
        node.build()
        if not cfg.keep_portfolio_stats:
            node.portfolio.analyzer.record_trade = _skip_trade_record  # see NautilusEngineConfig
        self.client = BridgeExecClientFactory.instances[cfg.venue]
        self.client.attach(self.book)
        self._run_task = loop.create_task(node.run_async())
        deadline = time.monotonic() + cfg.ready_timeout_ms / 1000.0
        while not node.trader.is_running:
            if self._run_task.done():
                raise RuntimeError("node.run_async ended before the trader started")
            if time.monotonic() > deadline:
                raise TimeoutError("the Nautilus trader did not start in time (see the child's log)")
            await asyncio.sleep(0.01)
        self._pull = self._ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.setsockopt(zmq.RCVHWM, 1_000_000)
        intake = host + ":" + str(self._pull.bind_to_random_port(host))
        self._intake_task = loop.create_task(self._intake_loop())
        startup_ms = (time.perf_counter() - self._t0) * 1000.0
        await self._control.send(
            encode_control(
                KernelReady(intake, events, os.getpid(), startup_ms)
            )
        )

    async def _intake_loop(self) -> None:
        """Await one frame, then drain without waiting; every batch, yield to Nautilus's queues."""
        pull = self._pull
        drain = zmq.Socket.shadow(pull.underlying).recv  # sync view of the same socket, no futures
        on_accepted = self.strategy.on_accepted
        decode = accepted_decoder.decode
        self.intake_errors = 0
        while True:
            frame: bytes | None = await pull.recv()
            n = 0
            while frame is not None:
                self.intake_frames += 1
                try:
                    on_accepted(decode(frame))
                except Exception:  # noqa: BLE001 - loop boundary: count and carry on
                    self.intake_errors += 1
                n += 1
                if n >= _INTAKE_BATCH:
                    n = 0
                    await asyncio.sleep(0)
                try:
                    frame = drain(zmq.NOBLOCK)
                except zmq.Again:
                    frame = None

    async def _serve_control(self) -> None:
        poller = zmq.asyncio.Poller()
        poller.register(self._control, zmq.POLLIN)
        interval_ms = self._cfg.parent_check_interval_ms
        while True:
            events = dict(await poller.poll(interval_ms))
            if self._control in events:
                frame = await self._control.recv()
                try:
                    cmd = command_decoder.decode(frame)
                except Exception:  # noqa: BLE001 - a bad frame from the host is counted, never fatal
                    self.bad_commands += 1
                    await self._control.send(encode_control(KernelFailed("bad control frame")))
                    continue
                kind = type(cmd)
                if kind is StopKernel:
                    await self._stop()
                    await self._control.send(encode_control(KernelStopped()))
                    await self._close_sockets()
                    return
                if kind is AskKernelStats:
                    await self._control.send(encode_control(KernelStatsReport(self.stats())))
                elif kind is PromoteKernel:
                    await self._control.send(encode_control(await self._promote(cmd.epoch, cmd.expect)))
                elif kind is DemoteKernel:
                    self.client.demote()
                    await self._control.send(encode_control(KernelDemoted()))
                elif kind is SetKernelEpoch:
                    self.client.set_epoch(cmd.epoch)
                    await self._control.send(encode_control(KernelEpochSet(cmd.epoch)))
                elif kind is CancelOpenOrders:
                    ids = self.strategy.cancel_open(cmd.strategy_id)
                    await self._control.send(encode_control(KernelCanceled(len(ids), ids[:1000])))
            if os.getppid() != self._parent:
                await self._stop()
                await self._close_sockets()
                return

    async def _promote(self, epoch: int, expect: int) -> KernelPromoted | KernelFailed:
        """Wait until the host's first `expect` frames went through the strategy and Nautilus's
        command and event queues are empty (the held orders are all in the client), then promote."""
        deadline = time.monotonic() + self._cfg.promote_query_timeout_ms / 1000.0
        kernel = self.node.kernel
        risk, exe = kernel.risk_engine, kernel.exec_engine
        while (
            self.intake_frames < expect or risk.cmd_qsize() or exe.cmd_qsize() or exe.evt_qsize()
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        try:
            out = await self.client.promote(epoch, self._cfg.promote_query_timeout_ms)
        except Exception as exc:  # noqa: BLE001 - reported to the host, which stays standby
            return KernelFailed(repr(exc))
        # the held cancels and replaces once the broker's word the promotion applied went through
        # Nautilus (an original it lists open is ACCEPTED here by then: canceled through Nautilus)
        while (risk.cmd_qsize() or exe.cmd_qsize() or exe.evt_qsize()) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        out["amend_cancels"] = self.strategy.take_over(self.client.takeover)
        return KernelPromoted(**out)

    def stats(self) -> KernelStats:
        c, b, s = self.client, self.book, self.strategy
        return KernelStats(
            signals=s.signals,
            sent=c.sent,
            reports=c.reports,
            published=b.published,
            duplicate_signals=b.duplicates,
            rejected_local=b.rejected_local,
            duplicate_fills=c.duplicate_fills,
            orphan_reports=c.orphan_reports,
            passthrough_reports=c.passthrough_reports,
            bad_frames=c.bad_frames + self.bad_commands,
            intake_errors=getattr(self, "intake_errors", 0),
            orders_in_cache=len(self.node.cache.orders()),
            trader_running=self.node.trader.is_running,
            standby=c.standby,
            epoch=c._epoch,
            intake_frames=self.intake_frames,
            held_sends=c.held_sends,
            held_open=len(c.shadow.held),
            followed=c.shadow.followed,
            followed_fills=len(c.followed_fills),
            early_applied=c.shadow.early_applied,
            early_waiting=len(c.shadow.early),
            promotions=c.promotions,
            resent=c.resent,
            adopted=c.adopted,
            in_flight=c.in_flight_kept,
            swept=c.swept,
            cancels=b.cancels,
            cancels_timed_out=b.deadlines.count,
            held_cancels=len(b.held.cancels),
            held_amends=b.held.held,
            adopted_replacements=c.adopted_replacements,
        )

    async def _stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._intake_task.cancel()
        await self.node.stop_async()
        self._run_task.cancel()
        try:
            await self._run_task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
            pass
        self.node.kernel.dispose()

    async def _close_sockets(self) -> None:
        for name in ("_pull",):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close(0)
        pub = getattr(self, "_pub", None)
        if pub is not None:
            pub.close(0)
            self._pub_ctx.term()
        self._control.close(1_000)


def main(argv: list[str]) -> int:
    control_endpoint, broker_endpoint, cfg_json = argv[1], argv[2], argv[3]
    cfg = decode_config(cfg_json)
    if cfg.use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    child = KernelChild(control_endpoint, broker_endpoint, cfg)
    try:
        return loop.run_until_complete(child.run())
    finally:
        child._ctx.term()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
