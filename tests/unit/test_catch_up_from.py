"""`catch_up_from`: a recovery skips what the engine took only when that covers the log after the checkpoint."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.checkpoint import catch_up_from
from node.streams import entry_key


@st.composite
def _log_and_run(draw):
    """A log's entry ids, a run the engine took (entries after `after` through `through`) and a checkpoint."""
    ids, ms = [], 1_700_000_000_000
    for _ in range(draw(st.integers(1, 30))):
        ms += draw(st.integers(0, 3))
        seq = 0 if not ids or entry_key(ids[-1])[0] != ms else entry_key(ids[-1])[1] + 1
        ids.append("%d-%d" % (ms, seq))
    first = draw(st.integers(0, len(ids) - 1))
    last = draw(st.integers(first, len(ids) - 1))
    after = "0" if first == 0 else ids[first - 1]
    position = draw(st.sampled_from(["0"] + ids))
    return ids, ids[first:last + 1], after, ids[last], position


@given(_log_and_run())
def test_the_skip_never_passes_an_entry_the_engine_did_not_take(case):
    ids, taken, after, through, position = case
    start = catch_up_from(position, after, through)
    assert start in (position, through)
    skipped = [i for i in ids if entry_key(position) < entry_key(i) <= entry_key(start)]
    assert set(skipped) <= set(taken)
    if entry_key(after) <= entry_key(position) < entry_key(through):
        assert start == through  # the run covers the checkpoint onwards: nothing of it read again


@given(_log_and_run())
def test_a_run_of_unknown_start_is_never_skipped(case):
    ids, taken, after, through, position = case
    assert catch_up_from(position, None, through) == position
    assert catch_up_from(position, after, "") == position
