"""Orders a new leader must adopt: booking reports of unknown orders, and the open-order index."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.engines.native import NativeOrderManager
from node.messages import ExecKind, ExecutionReport, Side, Signal, SignalAccepted
from node.open_orders import OpenOrder, OpenOrderIndex, decode_open_orders, open_orders_key
from node.orders import OrderState, signal_id_for


def accepted(rid: str) -> SignalAccepted:
    sig = Signal(request_id=rid, strategy_id="s1", timestamp=0.0, symbol="AAPL", action="BUY", quantity=10.0,
                 order_type="LIMIT", limit_price=100.0)
    return SignalAccepted(signal_id_for(rid), 0, sig)


def report(coid: str, kind: ExecKind, exec_id: str = "", cum: float = 0.0, last: float = 0.0) -> ExecutionReport:
    return ExecutionReport(kind=kind, client_order_id=coid, exec_id=exec_id, cum_qty=cum, last_qty=last,
                           last_px=100.0 if last else 0.0, symbol="AAPL", side=Side.BUY)


def test_every_fill_of_an_unknown_order_is_booked_once_and_never_redriven():
    m = NativeOrderManager()
    coid = "NAE-" + signal_id_for("r1") + "-0"
    first = m.on_report(report(coid, ExecKind.PARTIAL_FILL, "e1", 4, 4))
    assert first is not None and first.signal_id == signal_id_for("r1")
    assert m.on_report(report(coid, ExecKind.PARTIAL_FILL, "e1", 4, 4)) is None  # the same fill again: deduped
    assert m.on_report(report(coid, ExecKind.FILL, "e2", 10, 6)) is not None
    assert m.orders[coid].state is OrderState.FILLED
    m.on_report(report("NAE-x-0", ExecKind.UNKNOWN))
    assert m.pending() == []  # a booked order is known only from reports: never sent again


def test_a_resting_order_goes_through_the_index_and_a_new_leader_adopts_it_with_its_fills():
    leader = NativeOrderManager()
    index = OpenOrderIndex()
    intent = leader.on_signal(accepted("r1"))
    coid = intent.client_order_id
    for rep in (report(coid, ExecKind.NEW), report(coid, ExecKind.PARTIAL_FILL, "e1", 4, 4)):
        leader.on_report(rep)
        index.touch(leader.orders[coid])
    sets, dels = index.changes()
    assert list(sets) == [coid] and dels == []
    index.flushed()
    assert len(index) == 1
    # a new leader that never saw the order reads the hash
    entries = decode_open_orders({coid.encode(): sets[coid], b"junk": b"\x00not msgpack"})
    follower = NativeOrderManager()
    assert [follower.restore(e) for e in entries] == [True]
    assert follower.orders[coid].state is OrderState.PARTIALLY_FILLED
    assert follower.on_report(report(coid, ExecKind.PARTIAL_FILL, "e1", 4, 4)) is None  # booked before: not again
    assert follower.on_report(report(coid, ExecKind.FILL, "e2", 10, 6)) is not None  # the new fill is booked
    # once done, the order leaves the index
    index.touch(follower.orders[coid])
    assert index.changes() == ({}, [coid])
    index.flushed()
    assert len(index) == 0 and index.changes() is None


def test_an_order_done_between_two_flushes_never_touches_redis():
    m = NativeOrderManager()
    index = OpenOrderIndex()
    coid = m.on_signal(accepted("r2")).client_order_id
    for rep in (report(coid, ExecKind.NEW), report(coid, ExecKind.FILL, "e1", 10, 10)):
        m.on_report(rep)
        index.touch(m.orders[coid])
    assert index.changes() is None


@given(st.lists(st.sampled_from(["NEW", "PART", "FILL", "CANCEL", "FLUSH"]), max_size=30))
def test_the_index_holds_exactly_the_resting_orders_after_each_flush(steps):
    m = NativeOrderManager()
    index = OpenOrderIndex()
    hash_: dict[str, bytes] = {}
    coid = m.on_signal(accepted("r3")).client_order_id
    n = 0
    for step in steps + ["FLUSH"]:
        if step == "FLUSH":
            changes = index.changes()
            if changes is not None:
                hash_.update(changes[0])
                for k in changes[1]:
                    hash_.pop(k, None)
                index.flushed()
            resting = m.orders[coid].state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)
            assert (coid in hash_) == resting
            continue
        n += 1
        kind = {"NEW": ExecKind.NEW, "PART": ExecKind.PARTIAL_FILL, "FILL": ExecKind.FILL,
                "CANCEL": ExecKind.CANCELED}[step]
        if m.on_report(report(coid, kind, "e" + str(n), min(n, 9), 1)) is not None:
            index.touch(m.orders[coid])


@pytest.mark.parametrize("group, key", [("default", "n.engine.open"), ("etf", "n.engine.etf.open")])
def test_index_key_per_group(group, key):
    assert open_orders_key("n", group) == key


def test_open_order_round_trip():
    m = NativeOrderManager()
    intent = m.on_signal(accepted("r4"))
    entry = OpenOrder(intent, OrderState.ACCEPTED, 0.0, 0.0, [])
    import msgspec

    assert msgspec.msgpack.decode(msgspec.msgpack.encode(entry), type=OpenOrder) == entry


def test_orphan_reports_are_booked_once_each():
    from node.open_orders import BookedOrphans

    booked = BookedOrphans(keep=3)
    fill = report("NAE-a-0", ExecKind.PARTIAL_FILL, "e1", 4, 4)
    assert booked.first_time(fill) and not booked.first_time(fill)
    assert booked.first_time(report("NAE-a-0", ExecKind.FILL, "e2", 10, 6))
    status = report("NAE-a-0", ExecKind.CANCELED)
    assert booked.first_time(status) and not booked.first_time(status)
