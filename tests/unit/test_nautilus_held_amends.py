"""A Nautilus standby's held cancels and replaces, and the promotion's plan for them (pure: no kernel,
no broker): held_amends.HeldAmends and plan_takeover."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.engines.nautilus.held_amends import HeldAmends, plan_takeover
from node.messages import ExecKind, ExecutionReport, OrderSnapshot, OrdersReport

OPEN = (ExecKind.NEW, ExecKind.PARTIAL_FILL)
DONE = (ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED)


def _answer(*snaps: tuple[str, ExecKind], sent: tuple[str, ...] = (), fills: list | None = None) -> OrdersReport:
    return OrdersReport([OrderSnapshot(c, k, 0.0, 1.0) for c, k in snaps], fills or [], list(sent))


@pytest.mark.parametrize(
    ("broker", "sent_now", "taken", "cancels"),
    [
        (ExecKind.NEW, False, False, ["o"]),  # still open at the broker: canceled again
        (ExecKind.PARTIAL_FILL, False, False, ["o"]),
        (ExecKind.UNKNOWN, False, False, ["o"]),  # it may be there
        (ExecKind.CANCELED, False, False, []),  # finished: its own report answers, nothing made up
        (ExecKind.FILL, False, False, []),
        (ExecKind.REJECTED, False, False, []),
        (None, True, False, ["o"]),  # the promotion sends it now: the cancel follows it
        (None, False, True, ["o"]),  # the broker's gate took it, not listed yet
        (None, False, False, []),  # no trace and not sent: nothing to cancel
    ],
)
def test_a_held_cancel_is_sent_only_for_an_original_still_open(broker, sent_now, taken, cancels):
    snaps = [("o", broker)] if broker is not None else []
    answer = _answer(*snaps, sent=("o",) if taken else ())
    plan = plan_takeover(["o"], {}, answer, ["o"] if sent_now else [])
    assert plan.cancel == cancels and plan.refuse == [] and plan.adopt == {}


@pytest.mark.parametrize(
    ("original", "new", "new_taken", "cancel", "refuse", "adopted"),
    [
        (ExecKind.NEW, None, False, ["o"], [], False),  # the leader died before its cancel: cancel now
        (ExecKind.PARTIAL_FILL, None, False, ["o"], [], False),
        (ExecKind.CANCELED, None, False, [], [], False),  # its CANCELED, applied, sends the new order
        (ExecKind.FILL, None, False, [], [], False),  # applied: refused AMEND_ORDER_DONE by the strategy
        (ExecKind.UNKNOWN, None, False, [], ["o"], False),  # not live
        (None, None, False, [], ["o"], False),  # never acknowledged
        (ExecKind.CANCELED, ExecKind.NEW, False, [], [], True),  # the old leader sent it: adopted, not sent
        (ExecKind.CANCELED, None, True, [], [], True),  # its gate took it: adopted, its reports come here
        (ExecKind.NEW, ExecKind.NEW, False, [], [], True),  # never a second cancel or a second new order
    ],
)
def test_a_pending_replace_is_completed_or_refused_by_the_broker_word(original, new, new_taken, cancel, refuse,
                                                                     adopted):
    snaps = [(c, k) for c, k in (("o", original), ("n", new)) if k is not None]
    plan = plan_takeover([], {"o": "n"}, _answer(*snaps, sent=("n",) if new_taken else ()), [])
    assert plan.cancel == cancel and plan.refuse == refuse and ("n" in plan.adopt) is adopted


def test_an_adopted_replacement_takes_the_broker_state_and_each_fill_once():
    fills = [ExecutionReport(kind=ExecKind.PARTIAL_FILL, client_order_id="n", exec_id="x1", last_qty=1.0,
                             last_px=10.0, cum_qty=1.0)] * 2
    answer = OrdersReport([OrderSnapshot("o", ExecKind.CANCELED, 0.0, 0.0), OrderSnapshot("n", ExecKind.CANCELED, 1.0, 0.0)],
                          fills)
    plan = plan_takeover([], {"o": "n"}, answer, [])
    kinds = [(r.kind, r.exec_id) for r in plan.adopt["n"].reports]
    assert kinds == [(ExecKind.NEW, ""), (ExecKind.PARTIAL_FILL, "x1"), (ExecKind.CANCELED, "")]
    rejected = plan_takeover([], {"o": "n"}, _answer(("o", ExecKind.CANCELED), ("n", ExecKind.REJECTED)), [])
    assert [r.kind for r in rejected.adopt["n"].reports] == [ExecKind.REJECTED]  # never NEW before a rejection


def test_the_leaders_word_ends_a_held_amend():
    held = HeldAmends()
    held.hold_cancel("o1", "c1")
    held.hold_cancel("o2", "c2")
    held.hold_replace("o3", "r3")
    assert held.is_amend("c1") and held.is_amend("r3") and not held.is_amend("o1")
    assert held.refused("c1") == "o1" and "o1" not in held.cancels  # the leader refused the cancel
    held.finished("o2")  # the original ended (its report followed)
    assert held.cancels == {} and not held.is_amend("c2")
    assert held.refused("r3") == "o3" and held.refused("r3") is None
    assert held.dropped == 3


def test_held_amends_are_bounded_oldest_first():
    held = HeldAmends(max_held=3)
    for i in range(5):
        held.hold_cancel("o" + str(i), "c" + str(i))
    assert list(held.cancels) == ["o2", "o3", "o4"] and not held.is_amend("c0")


_KINDS = st.sampled_from([None, *OPEN, *DONE, ExecKind.UNKNOWN])


@settings(max_examples=300, deadline=None)
@given(
    cancels=st.dictionaries(st.sampled_from("abcdef"), st.tuples(_KINDS, st.booleans(), st.booleans()), max_size=6),
    replaces=st.dictionaries(st.sampled_from("abcdef"), st.tuples(_KINDS, _KINDS, st.booleans()), max_size=6),
)
def test_never_two_live_orders_and_no_cancel_of_a_finished_one(cancels, replaces):
    """Whatever the broker says: a cancel goes only to an original not finished at the broker, each
    at most once; a replace is adopted, completed by its original's cancel, left to the broker's
    report, or refused, never two of these; a replacement the broker has is never planned as sent."""
    snaps: dict[str, ExecKind] = {}
    sent_now, taken = [], []
    for orig, (kind, now, took) in cancels.items():
        if kind is not None:
            snaps[orig] = kind
        elif now:
            sent_now.append(orig)
        elif took:
            taken.append(orig)
    for orig, (kind, new_kind, new_taken) in replaces.items():
        if kind is not None:
            snaps.setdefault(orig, kind)
        if new_kind is not None:
            snaps["n-" + orig] = new_kind
        elif new_taken:
            taken.append("n-" + orig)
    answer = OrdersReport([OrderSnapshot(c, k, 0.0, 1.0) for c, k in snaps.items()], [], taken)
    plan = plan_takeover(list(cancels), {o: "n-" + o for o in replaces}, answer, sent_now)
    assert len(plan.cancel) == len(set(plan.cancel))
    for orig in plan.cancel:
        assert snaps.get(orig) not in DONE
        assert orig in snaps or orig in sent_now or orig in taken
    for orig in replaces:
        new = "n-" + orig
        outcomes = [new in plan.adopt, orig in plan.refuse, orig in plan.cancel and orig not in cancels]
        assert sum(outcomes) <= 1, (orig, plan)
        if new in snaps or new in taken:
            assert new in plan.adopt and orig not in plan.refuse
        if snaps.get(orig) in OPEN and new not in plan.adopt:
            assert orig in plan.cancel
