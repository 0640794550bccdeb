"""PyBroker as a signal source for the node (like Optimus), not as an execution engine.

PyBroker (lib-pybroker) is a backtester: its maintainer says it has no live trading (pybroker#32,
#115, #170; notes/peers.md). What it can honestly do here is decide: a PyBroker strategy runs over
bars, and each order its backtest placed becomes one signed NAE signal sent with `node.client`, in
bar order, bar by bar (the next bar's signals go only after this bar's orders are filled, as a live
feed would pace them). The node, not PyBroker, executes.

- `synthetic_bars`: deterministic OHLCV bars made in code (no download, no network); PyBroker takes
  a pandas DataFrame as its data source (`Strategy(df, start, end)`), so no DataSource or API key.
- `momentum_execution`: the small example strategy (long when the close is above the close
  `lookback` bars ago, flat otherwise), written against PyBroker's `ExecContext`.
- `signals_from_orders`: `TestResult.orders` rows -> `Signal`s. PyBroker's order `intent`
  (buy_to_open, sell_to_close, ...) is the NAE action of the same name; `request_id` is derived
  from the run and PyBroker's order id, so re-sending a run is answered as a retry, never a
  second order.
- `PyBrokerSignalSource.run`: backtest, derive, send bar by bar, wait for each bar's fills.
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable, Iterable

import msgspec
import numpy as np
import pandas as pd

from node.client import ExecutionClient
from node.messages import Action, ExecKind, ExecutionReport, OrderType, Reply, Signal, Status

#: PyBroker order intent -> NAE action
ACTION_OF_INTENT: dict[str, Action] = {
    "buy_to_open": Action.BUY_TO_OPEN,
    "buy_to_close": Action.BUY_TO_CLOSE,
    "sell_to_open": Action.SELL_TO_OPEN,
    "sell_to_close": Action.SELL_TO_CLOSE,
}
_FINAL = frozenset({ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED})


class PyBrokerSourceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The example strategy and its synthetic market."""

    strategy_id: str = "pybroker-momentum"
    start_prices: dict[str, float] = msgspec.field(default_factory=lambda: {"AAPL": 230.0, "MSFT": 420.0})
    first_day: str = "2024-01-02"
    bars: int = 60
    lookback_bars: int = 5
    shares: int = 10
    seed: int = 7
    wait_fill_s: float = 10.0  # per bar: how long to wait for the node's fills before giving up


class SourceResult(msgspec.Struct, kw_only=True):
    """What one run sent and got back."""

    signals: list[Signal]
    replies: list[Reply]
    reports: list[ExecutionReport]

    def filled(self) -> set[str]:
        return {r.request_id for r in self.reports if r.kind is ExecKind.FILL}


def synthetic_bars(start_prices: dict[str, float], first_day: str, bars: int, seed: int) -> pd.DataFrame:
    """Daily bars per symbol: a slow sine swing plus seeded noise (so the strategy both enters and
    exits), in the columns PyBroker requires (symbol, date, open, high, low, close, volume)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(first_day, periods=bars)
    frames = []
    steps = np.arange(bars)
    for i, (symbol, p0) in enumerate(sorted(start_prices.items())):
        ret = 0.01 * np.sin(steps / 4.0 + i) + rng.normal(0.0, 0.002, bars)
        close = np.round(p0 * np.cumprod(1.0 + ret), 2)
        open_ = np.round(np.concatenate(([p0], close[:-1])), 2)
        frames.append(pd.DataFrame({
            "symbol": symbol,
            "date": dates,
            "open": open_,
            "high": np.round(np.maximum(open_, close) * 1.002, 2),
            "low": np.round(np.minimum(open_, close) * 0.998, 2),
            "close": close,
            "volume": 1_000_000.0,
        }))
    return pd.concat(frames, ignore_index=True)


def momentum_execution(lookback_bars: int, shares: int) -> Callable:
    """The PyBroker execution function: long `shares` when the close rose over `lookback_bars`
    bars, sell everything when it fell."""

    def execute(ctx) -> None:  # ctx: pybroker.ExecContext
        if ctx.bars <= lookback_bars:
            return
        close = ctx.close
        rising = close[-1] > close[-1 - lookback_bars]
        if not ctx.long_pos() and rising:
            ctx.buy_shares = shares
        elif ctx.long_pos() and not rising:
            ctx.sell_all_shares()

    return execute


def run_backtest(cfg: PyBrokerSourceConfig, bars: pd.DataFrame | None = None):
    """Run the example strategy in PyBroker over the synthetic bars; returns its `TestResult`."""
    import pybroker

    pybroker.disable_logging()
    pybroker.disable_progress_bar()
    data = synthetic_bars(cfg.start_prices, cfg.first_day, cfg.bars, cfg.seed) if bars is None else bars
    start, end = data["date"].min(), data["date"].max()
    strategy = pybroker.Strategy(data, start, end, pybroker.StrategyConfig())
    strategy.add_execution(momentum_execution(cfg.lookback_bars, cfg.shares), sorted(cfg.start_prices))
    return strategy.backtest(train_size=0)


def run_id_for(cfg: PyBrokerSourceConfig) -> str:
    """Names one run by its inputs: the same strategy on the same bars gives the same request ids."""
    return hashlib.blake2b(msgspec.json.encode(cfg), digest_size=6).hexdigest()


def signals_from_orders(orders: pd.DataFrame, strategy_id: str, run_id: str, now_s: float) -> list[list[Signal]]:
    """PyBroker's filled backtest orders -> NAE signals, grouped by bar (oldest first). A limit
    order keeps its limit price; everything else is a market order of the same shares."""
    by_bar: dict[pd.Timestamp, list[Signal]] = {}
    for order_id, row in orders.sort_values("date", kind="stable").iterrows():
        limit = row["limit_price"]
        is_limit = row["order_type"] == "limit" and limit == limit  # NaN is no limit
        sig = Signal(
            request_id="pybroker-" + run_id + "-" + str(order_id),
            strategy_id=strategy_id,
            timestamp=now_s,
            symbol=str(row["symbol"]),
            action=ACTION_OF_INTENT[str(row["intent"])],
            quantity=float(row["shares"]),
            order_type=OrderType.LIMIT if is_limit else OrderType.MARKET,
            limit_price=float(limit) if is_limit else None,
            model_id="pybroker:" + strategy_id + ":" + pd.Timestamp(row["date"]).strftime("%Y-%m-%d"),
        )
        by_bar.setdefault(pd.Timestamp(row["date"]), []).append(sig)
    return [by_bar[k] for k in sorted(by_bar)]


class PyBrokerSignalSource:
    """Runs the PyBroker strategy and plays its orders into a running node through `client`."""

    def __init__(self, client: ExecutionClient, cfg: PyBrokerSourceConfig = PyBrokerSourceConfig()) -> None:
        self.client = client
        self.cfg = cfg
        self.test_result = None

    def derive(self, now_s: float | None = None) -> list[list[Signal]]:
        self.test_result = run_backtest(self.cfg)
        return signals_from_orders(
            self.test_result.orders, self.cfg.strategy_id, run_id_for(self.cfg), time.time() if now_s is None else now_s
        )

    def run(self) -> SourceResult:
        """Backtest, then send bar by bar; each bar's accepted signals are waited on until final."""
        bars = self.derive()
        client = self.client
        client.subscribe(self.cfg.strategy_id)
        result = SourceResult(signals=[], replies=[], reports=[])
        for bar in bars:
            waiting: set[str] = set()
            for sig in bar:
                sig = msgspec.structs.replace(sig, timestamp=time.time())
                reply = client.send_signal(sig)
                result.signals.append(sig)
                result.replies.append(reply)
                if reply.status is Status.ACCEPTED:
                    waiting.add(sig.request_id)
            result.reports.extend(self._await_final(waiting))
        return result

    def _await_final(self, request_ids: Iterable[str]) -> list[ExecutionReport]:
        waiting = set(request_ids)
        out: list[ExecutionReport] = []
        deadline = time.monotonic() + self.cfg.wait_fill_s
        while waiting and time.monotonic() < deadline:
            rep = self.client.next_event(timeout_s=max(0.01, deadline - time.monotonic()))
            if rep is None:
                break
            if rep.request_id in waiting:
                out.append(rep)
                if rep.kind in _FINAL:
                    waiting.discard(rep.request_id)
        return out
