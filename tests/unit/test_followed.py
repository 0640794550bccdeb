"""node.followed: the newest fills a standby followed (bounded, each once) and which of them to log."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.followed import FollowedFills, decode_mark, encode_mark, split_at_mark, unlogged
from node.messages import ExecKind, ExecutionReport


def _fill(i: int, kind: ExecKind = ExecKind.FILL, exec_id: str | None = None, qty: float = 1.0) -> ExecutionReport:
    return ExecutionReport(kind=kind, client_order_id="NAE-" + str(i), exec_id="X-" + str(i) if exec_id is None
                           else exec_id, last_qty=qty, last_px=10.0, cum_qty=qty, ts_ns=1_000 + i)


def test_only_executions_are_kept_each_once() -> None:
    kept = FollowedFills()
    assert kept.keep(_fill(1)) and kept.keep(_fill(2, ExecKind.PARTIAL_FILL))
    assert not kept.keep(_fill(1))  # the same exec id again
    assert not kept.keep(_fill(3, ExecKind.NEW))
    assert not kept.keep(_fill(4, exec_id=""))  # no exec id: a restated state
    assert not kept.keep(_fill(5, qty=0.0))  # a recovered FILL, not an execution
    assert [f.exec_id for f in kept.take()] == ["X-1", "X-2"]
    assert len(kept) == 0 and kept.take() == []  # taken once


@settings(deadline=None)  # a pure check: a loaded machine's slow first example is no failure
@given(n=st.integers(0, 60), cap=st.integers(1, 20))
def test_the_newest_are_kept_oldest_first(n: int, cap: int) -> None:
    kept = FollowedFills(cap)
    for i in range(n):
        kept.keep(_fill(i))
    assert [f.exec_id for f in kept.take()] == ["X-" + str(i) for i in range(max(0, n - cap), n)]


@settings(deadline=None)
@given(logged=st.lists(st.booleans(), max_size=30), repeat=st.booleans())
def test_unlogged_is_the_rest_once_in_order(logged: list[bool], repeat: bool) -> None:
    fills = [_fill(i) for i in range(len(logged))]
    given_fills = fills + fills if repeat else fills
    out = unlogged(given_fills, {f.exec_id for f, was in zip(fills, logged) if was})
    assert out == [f for f, was in zip(fills, logged) if not was]


@given(raw=st.one_of(st.none(), st.binary(max_size=60)))
def test_a_mark_value_that_does_not_parse_is_no_mark(raw: bytes | None) -> None:
    """Whatever Redis holds under the key: None, or an entry id of two numbers and a non-empty exec id."""
    mark = decode_mark(raw)
    if mark is not None:
        entry_id, exec_id = mark
        ms, _, seq = entry_id.partition("-")
        assert ms.isdigit() and seq.isdigit() and exec_id


@given(ms=st.integers(0, 2**48), seq=st.integers(0, 2**20), exec_id=st.text(min_size=1, max_size=30))
def test_a_mark_reads_back_as_written(ms: int, seq: int, exec_id: str) -> None:
    entry_id = str(ms) + "-" + str(seq)
    assert decode_mark(encode_mark(entry_id.encode(), exec_id)) == (entry_id, exec_id)


@given(n=st.integers(0, 20), at=st.integers(-1, 25))
def test_the_fills_after_the_marks_exec_id_in_order(n: int, at: int) -> None:
    fills = [_fill(i) for i in range(n)]
    after = split_at_mark(fills, "X-" + str(at))
    assert after == (fills[at + 1:] if 0 <= at < n else None)
