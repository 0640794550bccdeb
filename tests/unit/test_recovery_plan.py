"""The recovery planner every engine shares (node.recovery): pure, fed fake broker answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, OrdersReport, OrderType, Side
from node.recovery import fills_to_book, moved_states, plan_recovery, plan_settle

_IDS = [f"NAE-s{i}-0" for i in range(12)]
_KINDS = [ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED]


def _intent(coid: str) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id="s-" + coid, request_id="r-" + coid, strategy_id="t",
                       symbol="AAPL", side=Side.BUY, order_type=OrderType.MARKET, quantity=10.0)


def _fill(coid: str, exec_id: str, last: float = 1.0) -> ExecutionReport:
    return ExecutionReport(kind=ExecKind.PARTIAL_FILL, client_order_id=coid, exec_id=exec_id, last_qty=last,
                           last_px=100.0, cum_qty=last)


# ---------------------------------------------------------------- the cases by name

@pytest.mark.parametrize(
    ("listed", "sent", "bucket"),
    [
        (True, False, "adopt"),  # the broker has it: its word, never sent
        (True, True, "adopt"),  # listed wins over taken
        (False, True, "in_flight"),  # the gate took it, the venue does not list it yet: not sent again
        (False, False, "redrive"),  # no trace at the broker: sent now, same id
    ],
)
def test_each_asked_order_lands_in_its_bucket(listed: bool, sent: bool, bucket: str) -> None:
    coid = _IDS[0]
    answer = OrdersReport([OrderSnapshot(coid, ExecKind.NEW, 0.0, 10.0)] if listed else [], [],
                          [coid] if sent else [])
    plan = plan_recovery([_intent(coid)], answer)
    got = {"adopt": [s.client_order_id for s in plan.adopt],
           "in_flight": [i.client_order_id for i in plan.in_flight],
           "redrive": [i.client_order_id for i in plan.redrive]}
    assert got[bucket] == [coid]
    assert sum(len(v) for v in got.values()) == 1 and plan.unknown == []


def test_no_answer_sends_nothing_and_every_order_stays_unknown() -> None:
    plan = plan_recovery([_intent(c) for c in _IDS[:3]], None)
    assert plan.redrive == [] and plan.adopt == [] and plan.in_flight == []
    assert [i.client_order_id for i in plan.unknown] == _IDS[:3]


def test_the_lagging_checkpoint_case_sends_only_what_the_broker_never_took() -> None:
    # a lone engine restarted with its checkpoint 10,000 orders back: the venue lists most, the gate
    # took the rest (a remote venue still behind), and only the truly new are sent
    asked = [_intent("NAE-%d-0" % i) for i in range(10_000)]
    listed = [OrderSnapshot("NAE-%d-0" % i, ExecKind.FILL, 10.0, 0.0) for i in range(0, 2_825)]
    taken = ["NAE-%d-0" % i for i in range(2_825, 9_990)]
    plan = plan_recovery(asked, OrdersReport(listed, [], taken))
    assert len(plan.adopt) == 2_825 and len(plan.in_flight) == 7_165
    assert [i.client_order_id for i in plan.redrive] == ["NAE-%d-0" % i for i in range(9_990, 10_000)]
    assert len(plan.waiting) == 7_175


def test_settle_adopts_what_the_lost_broker_has_and_keeps_stranded_what_its_gate_took() -> None:
    answer = OrdersReport([OrderSnapshot("a", ExecKind.FILL, 10.0, 0.0), OrderSnapshot("z", ExecKind.NEW, 0.0, 1.0)],
                          [_fill("a", "e1"), _fill("z", "e9")], ["b"])
    plan = plan_settle(["a", "b", "c"], answer, lambda coid: set())
    assert [s.client_order_id for s in plan.found] == ["a"]  # z was not stranded: not touched
    assert plan.never_got == ["c"]  # b may still execute at the lost venue: stays stranded
    assert [f.exec_id for f in plan.fills] == ["e1"]


@pytest.mark.parametrize(
    ("kind", "cum", "bucket"),
    [
        (ExecKind.NEW, 0.0, "found"),
        (ExecKind.FILL, 10.0, "found"),
        (ExecKind.CANCELED, 0.0, "found"),
        (ExecKind.REJECTED, 2.0, "found"),  # something executed there: its word
        (ExecKind.REJECTED, 0.0, "never_got"),  # refused, NOT_AT_BROKER included: it never executes there
        (ExecKind.UNKNOWN, 0.0, "stranded"),  # its new adapter does not know yet: asked again
    ],
)
def test_settle_redrives_what_the_lost_broker_refused_and_keeps_what_it_does_not_know_yet(
        kind: ExecKind, cum: float, bucket: str) -> None:
    plan = plan_settle(["a"], OrdersReport([OrderSnapshot("a", kind, cum, 0.0)], [], []), lambda coid: set())
    assert [s.client_order_id for s in plan.found] == (["a"] if bucket == "found" else [])
    assert plan.never_got == (["a"] if bucket == "never_got" else [])


def test_moved_states_leaves_fills_and_unlisted_orders_alone() -> None:
    answer = OrdersReport([OrderSnapshot("a", ExecKind.CANCELED, 0.0, 0.0), OrderSnapshot("b", ExecKind.FILL, 1.0, 0.0),
                           OrderSnapshot("c", ExecKind.NEW, 0.0, 1.0)])
    same = {"a": False, "b": False, "c": True}
    moved = moved_states(["a", "b", "c", "d"], answer, lambda snap: same.get(snap.client_order_id))
    assert [s.client_order_id for s in moved] == ["a"]


# ---------------------------------------------------------------- properties

@st.composite
def _scenario(draw: st.DrawFn) -> tuple[list[OrderIntent], OrdersReport, dict[str, set[str]]]:
    asked = draw(st.lists(st.sampled_from(_IDS), max_size=12))
    listed = draw(st.lists(st.tuples(st.sampled_from(_IDS), st.sampled_from(_KINDS)), max_size=12,
                           unique_by=lambda t: t[0]))
    taken = draw(st.lists(st.sampled_from(_IDS), max_size=12, unique=True))
    fills = draw(st.lists(st.tuples(st.sampled_from(_IDS), st.integers(0, 20), st.sampled_from([0.0, 1.0])),
                          max_size=30))
    ours = draw(st.lists(st.sampled_from(_IDS), unique=True))
    booked = {c: {"e%d" % n for n in draw(st.lists(st.integers(0, 20), max_size=5))} for c in ours}
    answer = OrdersReport([OrderSnapshot(c, k, 0.0, 0.0) for c, k in listed],
                          [_fill(c, "e%d" % n, q) for c, n, q in fills], taken)
    return [_intent(c) for c in asked], answer, booked


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_a_redriven_order_is_never_one_the_broker_has_and_every_listed_order_is_adopted(scenario) -> None:
    asked, answer, _ = scenario
    plan = plan_recovery(asked, answer)
    broker_has = {s.client_order_id for s in answer.orders} | set(answer.sent)
    assert not {i.client_order_id for i in plan.redrive} & broker_has
    asked_ids = {i.client_order_id for i in asked}
    assert {s.client_order_id for s in plan.adopt} == asked_ids & {s.client_order_id for s in answer.orders}
    # every asked order lands in exactly one bucket, once
    buckets = ([s.client_order_id for s in plan.adopt] + [i.client_order_id for i in plan.in_flight]
               + [i.client_order_id for i in plan.redrive] + [i.client_order_id for i in plan.unknown])
    assert sorted(buckets) == sorted(asked_ids)


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_no_fill_is_booked_twice_nor_one_already_booked_nor_one_of_an_order_not_ours(scenario) -> None:
    _, answer, booked = scenario
    first = fills_to_book(answer.fills, booked.get)
    keys = [(f.client_order_id, f.exec_id) for f in first]
    assert len(keys) == len(set(keys))
    assert all(f.client_order_id in booked and f.exec_id not in booked[f.client_order_id] for f in first)
    assert all(f.last_qty > 0.0 for f in first)
    # booking them, then asking again (the same answer twice): nothing more
    for f in first:
        booked[f.client_order_id].add(f.exec_id)
    assert fills_to_book(answer.fills + answer.fills, booked.get) == []


@given(st.lists(st.sampled_from(_IDS), max_size=12))
def test_an_unanswered_order_stays_unknown(ids: list[str]) -> None:
    plan = plan_recovery([_intent(c) for c in ids], None)
    assert plan.redrive == [] and plan.waiting == []
    assert [i.client_order_id for i in plan.unknown] == list(dict.fromkeys(ids))


@settings(max_examples=200, deadline=None)
@given(_scenario(), st.lists(st.sampled_from(_IDS), max_size=12))
def test_settle_never_unstrands_an_order_the_lost_broker_has_live_or_took(scenario, stranded: list[str]) -> None:
    _, answer, booked = scenario
    plan = plan_settle(stranded, answer, booked.get)
    refused = {s.client_order_id for s in answer.orders if s.kind is ExecKind.REJECTED and s.cum_qty <= 0.0}
    live_or_taken = ({s.client_order_id for s in answer.orders} - refused) | (set(answer.sent) - refused)
    assert not set(plan.never_got) & live_or_taken  # what may still execute there is never sent elsewhere
    answered = {s.client_order_id for s in answer.orders if s.kind is not ExecKind.UNKNOWN} - refused
    assert {s.client_order_id for s in plan.found} == set(stranded) & answered
    assert all(f.client_order_id in stranded for f in plan.fills)
