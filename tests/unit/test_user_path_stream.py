"""bench.user_path: the TOML a user would write loads as the node config, the Optimus-like stream is varied and valid."""

from __future__ import annotations

import time

import msgspec

from bench.user_path import STRATEGIES, UserPathTarget, optimus_signal, paper_symbols, to_toml, user_config
from node.config import load_config
from node.messages import ExecKind, ExecutionReport, OrderType, Signal, encode
from node.risk.config import throughput_limits


def test_the_written_toml_loads_as_the_bench_config(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(to_toml(user_config(str(tmp_path), "bench", "s" * 64)))
    cfg = load_config(path, env={})
    assert cfg.data_dir == str(tmp_path) and cfg.signing.keys == {"bench": "s" * 64}
    assert cfg.intake.port == 0 and cfg.api.port == 0
    assert cfg.risk == throughput_limits(load_config(None, env={}).risk)
    assert [s.symbol for s in cfg.broker.paper.symbols] == [s.symbol for s in paper_symbols()]


def test_the_stream_covers_every_order_type_strategies_and_symbols_and_decodes_as_a_signal():
    symbols, now = paper_symbols(), time.time()
    sigs = [optimus_signal(i, "r", now, symbols) for i in range(STRATEGIES * len(symbols))]
    assert {s.order_type for s, _ in sigs} == set(OrderType)
    assert len({s.strategy_id for s, _ in sigs}) == STRATEGIES
    assert len({s.symbol for s, _ in sigs}) == len(symbols)
    assert all(s.risk_meta is not None for s, _ in sigs)
    assert any(s.notional is not None for s, _ in sigs)
    for sig, must_fill in sigs:
        assert msgspec.msgpack.decode(encode(sig), type=Signal) == sig
        assert must_fill == (sig.order_type in (OrderType.MARKET, OrderType.LIMIT))


def _fill(rid: str, exec_id: str, coid: str = "NAE-x-0") -> ExecutionReport:
    return ExecutionReport(kind=ExecKind.FILL, client_order_id=coid, exec_id=exec_id, last_qty=1.0, cum_qty=1.0,
                           request_id=rid)


def test_the_user_path_counts_a_repeated_report_apart_from_a_second_execution():
    """The harness's `duplicates` is a second execution of one signal; a report seen again (same exec
    id, e.g. a new leader re-publishing a fill) is a `repeat`; a fill with no request_id is `unattributed`."""
    target = UserPathTarget(n_max=4)
    target._index = {"r0": 0, "r1": 1}
    for ev in (_fill("r0", "E1"), _fill("r0", "E1"), _fill("", "E1"), _fill("", "E9"), _fill("r1", "E2"),
               _fill("r1", "E3"), _fill("r0", "")):
        target._on_fill(ev)
    counts = target.counts()
    assert (counts["repeats"], counts["unattributed"], counts["duplicates"]) == (3, 1, 1)
    assert target._fills == 2
