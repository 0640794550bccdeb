"""Playing Optimus: send N signals over a mix of symbols and strategies, wait for every reply and
fill, count what was lost or duplicated, and measure latency.

Used by `execnode demo` and by the integration tests (against a node someone else started).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from node.client import AsyncExecutionClient
from node.messages import ExecKind, OrderType, RiskMeta, Signal

STRATEGIES = ("momentum", "mean_revert", "pairs", "news_alpha")
TERMINAL = frozenset({ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED})


def make_signals(n: int, prices: dict[str, float], seed: int = 1, bad_every: int = 50) -> list[Signal]:
    """A realistic mix: market and marketable-limit orders, quantity and notional, sizes that need
    several price levels (partial fills); every `bad_every`-th signal breaks a risk limit on purpose."""
    rng = random.Random(seed)
    symbols = sorted(prices)
    run = str(time.time_ns())
    out = []
    now = time.time()
    for i in range(n):
        sym = rng.choice(symbols)
        px = prices[sym]
        buy = rng.random() < 0.5
        kind = OrderType.LIMIT if rng.random() < 0.2 else OrderType.MARKET
        fields = dict(
            request_id="demo-" + run + "-" + str(i),
            strategy_id=rng.choice(STRATEGIES),
            timestamp=now,
            symbol=sym,
            action="BUY" if buy else "SELL",
            order_type=kind,
            correlation_group="tech" if sym in ("AAPL", "MSFT", "NVDA") else "index",
            model_id="optimus-v3",
            confidence=round(rng.random(), 3),
        )
        if kind is OrderType.LIMIT:
            fields["limit_price"] = round(px * (1.02 if buy else 0.98), 2)  # marketable, inside the collar
        if bad_every and i % bad_every == bad_every - 1:
            fields["quantity"] = 1_000_000.0  # over max_quantity: REJECTED MAX_QUANTITY
        elif rng.random() < 0.1:
            fields["notional"] = float(rng.randrange(1_000, 50_000))
        else:
            fields["quantity"] = float(rng.choice((1, 5, 10, 50, 100, 250, 400, 800, 1200)))
        fields["risk_meta"] = RiskMeta(max_slippage=0.05)
        out.append(Signal(**fields))
    return out


@dataclass
class DemoResult:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    timeouts: int = 0
    filled: int = 0
    canceled: int = 0
    venue_rejected: int = 0
    lost: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    reply_ns: list[int] = field(default_factory=list)
    fill_ns: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def summary(self) -> dict:
        def pct(values: list[int], q: float) -> float:
            return round(float(np.percentile(np.asarray(values), q)) / 1e3, 1) if values else 0.0

        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "filled": self.filled,
            "canceled": self.canceled,
            "venue_rejected": self.venue_rejected,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reasons": dict(sorted(self.reasons.items())),
            "p50_us": pct(self.reply_ns, 50),
            "p99_us": pct(self.reply_ns, 99),
            "p999_us": pct(self.reply_ns, 99.9),
            "fill_p50_us": pct(self.fill_ns, 50),
            "fill_p99_us": pct(self.fill_ns, 99),
            "fill_p999_us": pct(self.fill_ns, 99.9),
            "signals_per_s": round(self.sent / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "elapsed_s": round(self.elapsed_s, 2),
        }


async def play(
    client: AsyncExecutionClient,
    signals: list[Signal],
    window: int = 256,
    settle_s: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Send every signal (at most `window` awaiting a reply), then wait up to `settle_s` for every
    accepted order to reach a terminal state."""
    res = DemoResult()
    await client.subscribe(kinds=TERMINAL)  # returns once the events relay holds the subscription
    sent_at: dict[str, int] = {}
    outstanding: set[str] = set()  # accepted, not terminal
    terminal_seen: set[str] = set()
    exec_seen: set[str] = set()
    replied: set[str] = set()
    all_done = asyncio.Event()
    sending_done = False

    async def listen() -> None:
        while True:
            ev = await client.next_event(0.2)
            if ev is None:
                continue
            if ev.exec_id:
                if ev.exec_id in exec_seen:
                    res.duplicates += 1
                    continue
                exec_seen.add(ev.exec_id)
            if ev.kind in TERMINAL:
                rid = ev.request_id
                if rid in terminal_seen:
                    res.duplicates += 1
                    continue
                terminal_seen.add(rid)
                outstanding.discard(rid)
                if ev.kind is ExecKind.FILL:
                    res.filled += 1
                    t0 = sent_at.get(rid)
                    if t0 is not None:
                        res.fill_ns.append(time.perf_counter_ns() - t0)
                elif ev.kind is ExecKind.CANCELED:
                    res.canceled += 1
                else:
                    res.venue_rejected += 1
                if sending_done and not outstanding:
                    all_done.set()

    sem = asyncio.Semaphore(window)

    async def send_one(sig: Signal) -> None:
        rid = sig.request_id
        try:
            t0 = time.perf_counter_ns()
            sent_at[rid] = t0
            if rid not in terminal_seen:
                outstanding.add(rid)  # before the reply: a fill can beat its own ACK here
            reply = await client.send_signal(sig)
            res.reply_ns.append(time.perf_counter_ns() - t0)
        except Exception:  # noqa: BLE001 - counted: a timeout is reported, never hidden
            res.timeouts += 1
            outstanding.discard(rid)
            return
        finally:
            sem.release()
        if rid in replied:
            res.duplicates += 1
        replied.add(rid)
        if reply.status == "ACCEPTED":
            res.accepted += 1
        else:
            outstanding.discard(rid)
            if reply.status == "REJECTED":
                res.rejected += 1
            else:
                res.errors += 1
            for r in reply.reasons:
                res.reasons[r] = res.reasons.get(r, 0) + 1

    listener = asyncio.get_running_loop().create_task(listen())
    t_start = time.perf_counter()
    last = t_start
    tasks = []
    for sig in signals:
        await sem.acquire()
        tasks.append(asyncio.get_running_loop().create_task(send_one(sig)))
        res.sent += 1
        now = time.perf_counter()
        if progress is not None and now - last >= 0.5:
            last = now
            progress("sent %d/%d  accepted %d  rejected %d  filled %d" % (res.sent, len(signals), res.accepted, res.rejected, res.filled))
    await asyncio.gather(*tasks)
    sending_done = True
    if progress is not None:
        progress("all %d sent; waiting for fills (%d outstanding)" % (res.sent, len(outstanding)))
    if outstanding:
        try:
            await asyncio.wait_for(all_done.wait(), settle_s)
        except asyncio.TimeoutError:
            pass
    res.elapsed_s = time.perf_counter() - t_start
    await asyncio.sleep(0.2)  # late duplicates would show up here
    listener.cancel()
    try:
        await listener
    except asyncio.CancelledError:
        pass
    res.lost = len(outstanding) + res.timeouts
    return res
