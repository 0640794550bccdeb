"""bench.user_path: the TOML a user would write loads as the node config, the Optimus-like stream is varied and valid."""

from __future__ import annotations

import time

import msgspec

from bench.user_path import STRATEGIES, optimus_signal, paper_symbols, to_toml, user_config
from node.config import load_config
from node.messages import OrderType, Signal, encode
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
