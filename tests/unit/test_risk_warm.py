"""`warm()` compiles every kernel with the live argument types: nothing compiles on the first live signal."""

from __future__ import annotations

import numpy as np

from node.messages import ExecKind, ExecutionReport, RiskMeta, Side, Signal
from node.risk import PreTradeRisk, RiskLimits
from node.risk import kernels

KERNELS = ("check_order", "commit_order", "check_commit_order", "apply_fill", "apply_price", "release_pending", "recompute_cw",
           "ewma_step", "symmetrize")
T0 = 1_700_000_000 * 1_000_000_000


def test_no_compilation_after_warm() -> None:
    risk = PreTradeRisk(RiskLimits(cov_sample_interval_ms=1), ["AAPL"], {"AAPL": 100.0}, 1_000_000.0)
    risk.warm()
    before = {k: len(getattr(kernels, k).signatures) for k in KERNELS}
    s = Signal(request_id="w1", strategy_id="s", timestamp=1.0, symbol="AAPL", action="SELL", quantity=3,
               order_type="LIMIT", limit_price=100, risk_meta=RiskMeta(max_slippage=0.01), correlation_group="g")
    n = Signal(request_id="w2", strategy_id="s", timestamp=1.0, symbol="NEW", action="BUY", notional=1000.0)
    for sig in (s, n):
        risk.check(sig, T0)
        risk.commit(sig, T0)
    risk.check_commit(s, T0 + 1)
    risk.release(n, T0)
    risk.on_fill(ExecutionReport(kind=ExecKind.PARTIAL_FILL, client_order_id="c", exec_id="e", symbol="AAPL",
                                 side=Side.SELL, last_qty=1.0, last_px=100.0, leaves_qty=2.0, request_id="w1",
                                 ts_ns=T0), "s")
    risk.on_fill(ExecutionReport(kind=ExecKind.CANCELED, client_order_id="c", request_id="w1", ts_ns=T0), "s")
    risk.on_price("AAPL", 101, T0 + 5_000_000)
    risk.load_covariance(["AAPL", "NEW"], np.eye(2) * 1e-4)
    assert {k: len(getattr(kernels, k).signatures) for k in KERNELS} == before
