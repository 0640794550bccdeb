"""A Nautilus group's cancel deadline as pure logic (adapters/engines/nautilus/cancel_deadline.py):
an order whose cancel had no finishing word by the deadline is UNKNOWN once, never when it finished;
a cancel of an UNKNOWN order starts no second deadline; a CANCELED Nautilus made up for a cancel of
ours is UNKNOWN (published once). The kernel side runs in tests/integration/test_nautilus_cancel_deadline.py."""

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.engines.nautilus.cancel_deadline import CancelDeadlines

MS = 1_000_000


def test_overdue_only_when_still_open_and_only_once():
    d = CancelDeadlines(1_000 * MS)
    open_ = {"a", "b"}
    d.sent("a", 0)
    d.sent("b", 500 * MS)
    d.sent("c", 600 * MS)
    assert d.overdue(999 * MS, open_.__contains__) == []
    assert d.overdue(1_000 * MS, open_.__contains__) == ["a"]
    d.finished("b")  # the broker's CANCELED (or a fill) came in time
    assert d.overdue(5_000 * MS, open_.__contains__) == []  # c: finished by itself (not open)
    assert d.timed_out == {"a"} and d.count == 1
    d.sent("a", 6_000 * MS)  # a second cancel of the UNKNOWN order: sent, no second deadline
    assert d.overdue(60_000 * MS, open_.__contains__) == [] and d.count == 1
    assert d.waiting("a")
    d.finished("a")  # the broker's next word
    assert not d.waiting("a") and d.timed_out == set()


def test_a_made_up_cancel_is_unknown_once():
    d = CancelDeadlines(1_000 * MS)
    assert not d.waiting("x")  # not ours: Nautilus's CANCELED of it is left alone
    d.sent("a", 0)
    assert d.made_up_cancel("a") and d.count == 1  # before the deadline: UNKNOWN now
    assert d.overdue(10_000 * MS, lambda c: True) == []
    d.sent("b", 0)
    assert d.overdue(1_000 * MS, lambda c: True) == ["b"]
    assert d.waiting("b") and not d.made_up_cancel("b") and d.count == 2  # published already


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["sent", "finished", "tick"]), st.sampled_from("abc"),
                          st.integers(0, 3_000)), max_size=40))
def test_never_unknown_after_a_finishing_word_nor_twice(ops):
    d = CancelDeadlines(1_000 * MS)
    now = 0
    finished: set[str] = set()
    unknown: list[str] = []
    for op, coid, step in ops:
        now += step * MS
        if op == "sent":
            if coid not in finished:
                d.sent(coid, now)
        elif op == "finished":
            d.finished(coid)
            finished.add(coid)
        else:
            got = d.overdue(now, lambda c: c not in finished)
            assert not set(got) & finished
            unknown += got
    assert len(unknown) == len(set(unknown)) == d.count
