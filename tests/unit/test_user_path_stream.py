"""bench.user_path: the TOML a user would write loads as the node config, the Optimus-like stream is varied and valid."""

from __future__ import annotations

import time

import msgspec

from bench.user_path import (STRATEGIES, UserPathTarget, VenueBook, optimus_signal, paper_symbols, to_toml, user_config,
                             venue_counts)
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


def test_a_second_fill_is_named_by_what_the_two_reports_were():
    """A restated FILL (reason RECOVERED, no exec id) taken as the signal's fill, then the fill itself:
    one execution, counted a duplicate and named so (what the 945 of the 2026-11-30 CI run were)."""
    target = UserPathTarget(n_max=2)
    target._index = {"r0": 0}
    target._on_fill(ExecutionReport(kind=ExecKind.FILL, client_order_id="NAE-x-0", cum_qty=1.0, reason="RECOVERED",
                                    request_id="r0"))
    target._on_fill(_fill("r0", "E1"))
    assert target.counts()["duplicates"] == 1
    assert target.dup_kinds == {"RECOVERED/no-exec-id -> -": 1}
    assert target._second_exec_ids == {"E1"}


def test_venue_counts_tell_a_duplicated_order_or_execution_from_a_second_report():
    book = VenueBook(
        taken={"A": ["P-1"], "B": ["P-2", "P-3"], "C": ["P-4"], "D": ["P-5"]},
        types={"A": "MARKET", "B": "MARKET", "C": "MARKET", "D": "LIMIT"},
        qty={"A": 2.0, "B": 2.0, "C": 1.0, "D": 1.0},
        execs={"A": {"E-1": ("PARTIAL_FILL", 1.0), "E-2": ("FILL", 1.0)}, "B": {"E-3": ("FILL", 2.0)},
               "C": {"E-4": ("FILL", 1.0), "E-5": ("FILL", 1.0)}},
        exec_records={"E-1": 1, "E-2": 1, "E-3": 1, "E-4": 1, "E-5": 1},
    )
    ledger = {"A": [("E-1", 1.0), ("E-2", 1.0)], "B": [("E-3", 2.0), ("MANUAL-B", 1.0)], "C": [("E-4", 1.0)]}
    counts = venue_counts({"A", "B", "C", "D"}, book, ledger, {"E-2", "E-9"})
    assert (counts["venue_orders"], counts["venue_dup_orders"]) == (5, 1)  # B: taken twice
    assert (counts["venue_execs"], counts["venue_dup_execs"]) == (5, 1)  # C: 2 executed of 1
    assert (counts["ledger_fills"], counts["ledger_dup_fills"]) == (5, 1)  # B: an exec id the venue lacks
    assert (counts["report_dups_at_venue"], counts["report_dups_not_at_venue"]) == (1, 1)
    book.exec_records["E-1"] = 2  # one exec id handed out twice: a duplicated execution too
    assert venue_counts({"A"}, book, None, set())["venue_dup_execs"] == 1
    assert venue_counts({"A"}, None, None, set())["venue_dup_orders"] == -1  # not readable
