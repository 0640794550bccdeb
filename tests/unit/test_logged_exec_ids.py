"""The events-stream scan a new leader and the reconciler share: which fills were published already."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.messages import ExecKind, ExecutionReport, encode
from node.streams import EVENTS_FIELD, LOGGED_MARGIN_MS, exec_ids_in, logged_since_ms, pack_batch


def _fill(exec_id: str, ts_ns: int = 5_000_000_000_000) -> ExecutionReport:
    return ExecutionReport(kind=ExecKind.FILL, client_order_id="NAE-x-0", exec_id=exec_id, last_qty=1.0,
                           cum_qty=1.0, ts_ns=ts_ns)


@given(st.lists(st.lists(st.sampled_from("abcdef"), max_size=4), max_size=5), st.sets(st.sampled_from("abcdefgh")))
def test_exactly_the_wanted_exec_ids_the_entries_hold(batches, wanted):
    entries = [(str(i).encode(), {EVENTS_FIELD: pack_batch([encode(_fill(e)) for e in batch])})
               for i, batch in enumerate(batches)]
    held = {e for batch in batches for e in batch}
    assert exec_ids_in(entries, set(wanted)) == held & set(wanted)


def test_the_scan_starts_a_margin_before_the_oldest_fill_and_never_below_zero():
    fills = [_fill("a", 9_000_000_000_000), _fill("b", 7_000_000_000_000)]
    assert logged_since_ms(fills) == 7_000_000 - LOGGED_MARGIN_MS
    assert logged_since_ms([_fill("c", 1_000_000)]) == 0
