"""Cancels and replaces of a strategy in modes (node.amend_routes): an amend goes to the group(s) its
original went to and only those; an amend of an original the validator does not know goes to the
live group alone (one answer: its AMEND_UNKNOWN_ORIGINAL, or the cancel of an order routed there before
its strategy joined modes); the routes survive a snapshot and stay
bounded. Fuzzed with hypothesis against the engines' own view (ModeTable.take, node.amends.plan_amend)."""

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from node.amend_routes import AmendRoutes
from node.amends import CancelPlan, RefusePlan, ReplacePlan, plan_amend
from node.config import ModeConfig, TradingMode
from node.messages import Amend, AmendKind, OrderIntent, Side, Signal, SignalAccepted
from node.modes import SHADOW_SUFFIX, ModeTable, Route, is_shadow
from node.orders import Order, OrderState, client_order_id_for, signal_id_for
from node.reasons import Reason
from node.risk.snapshot import RiskSnapshot

PAPER, LIVE = "paper", "live"


def table() -> ModeTable:
    return ModeTable([ModeConfig(strategies=["s*"], paper_group=PAPER, live_group=LIVE, canary_share=0.5)])


def signal(rid: str, amend: Amend | None = None, strategy: str = "s1") -> Signal:
    return Signal(request_id=rid, strategy_id=strategy, timestamp=0.0, symbol="AAPL", action="BUY", quantity=1.0,
                  order_type="LIMIT", limit_price=10.0, amend=amend)


def cancel(original: str) -> Amend:
    return Amend(kind=AmendKind.CANCEL, original_request_id=original)


def replace(original: str) -> Amend:
    return Amend(kind=AmendKind.REPLACE, original_request_id=original)


def stamped(modes: ModeTable, routes: AmendRoutes, sig: Signal) -> SignalAccepted:
    route = routes.stamp(sig, modes.stamp(sig.strategy_id, sig.amend is not None, 10.0))
    return SignalAccepted(signal_id_for(sig.request_id), 0, sig, route)


def intent_of(acc: SignalAccepted) -> OrderIntent:
    sig = acc.signal
    return OrderIntent(client_order_id=client_order_id_for(acc.signal_id), symbol=sig.symbol, side=Side.BUY,
                       quantity=1.0, strategy_id=sig.strategy_id, request_id=sig.request_id, signal_id=acc.signal_id,
                       order_type=sig.order_type, limit_price=sig.limit_price)


def test_an_amend_goes_only_where_its_original_went():
    modes, routes = table(), AmendRoutes()
    cases = [(TradingMode.PAPER, Route.AMEND_PAPER, {PAPER: "s1"}),
             (TradingMode.LIVE, Route.AMEND_LIVE, {LIVE: "s1"}),
             (TradingMode.SHADOW, Route.AMEND_SHADOW, {LIVE: "s1", PAPER: "s1" + SHADOW_SUFFIX})]
    for n, (mode, amend_stamp, where) in enumerate(cases):
        modes.set_mode("s1", mode)
        stamped(modes, routes, signal("o" + str(n)))
        modes.set_mode("s1", TradingMode.PAPER)  # the mode now does not matter: the original's route does
        acc = stamped(modes, routes, signal("c" + str(n), cancel("o" + str(n))))
        assert acc.route == amend_stamp
        got = {g: modes.take(acc, g) for g in (PAPER, LIVE)}
        assert {g: a.signal.strategy_id for g, a in got.items() if a is not None} == where


def test_an_amend_of_an_unknown_original_goes_to_the_live_group_alone_which_refuses_it():
    modes, routes = table(), AmendRoutes()
    modes.set_mode("s1", TradingMode.PAPER)
    acc = stamped(modes, routes, signal("c1", cancel("never")))
    assert acc.route == Route.AMEND_UNKNOWN
    got = {g: modes.take(acc, g) for g in (PAPER, LIVE)}
    assert got[PAPER] is None and got[LIVE] is acc
    plan = plan_amend(AmendKind.CANCEL, "never", intent_of(acc), {}, 1)
    assert type(plan) is RefusePlan and plan.report.reason == Reason.AMEND_UNKNOWN_ORIGINAL
    assert plan.report.client_order_id == client_order_id_for(signal_id_for("c1"))  # the amend's own id


def test_a_live_order_placed_before_its_strategy_joined_modes_can_still_be_canceled():
    """Routed (not stamped) to the live group before `[[modes]]` named the strategy: the validator
    does not know it, the cancel goes to the live group, which holds it and cancels it."""
    modes, routes = table(), AmendRoutes()
    before = intent_of(SignalAccepted(signal_id_for("old"), 0, signal("old"), Route.ROUTER))
    held_live = {before.client_order_id: Order(intent=before, state=OrderState.ACCEPTED)}
    modes.set_mode("s1", TradingMode.PAPER)
    acc = stamped(modes, routes, signal("c-old", cancel("old")))
    assert modes.take(acc, PAPER) is None
    got = modes.take(acc, LIVE)
    assert got is acc
    plan = plan_amend(AmendKind.CANCEL, "old", intent_of(got), held_live, 1)
    assert type(plan) is CancelPlan and plan.client_order_id == before.client_order_id


def test_a_replace_is_remembered_where_its_original_was_and_a_cancel_is_not():
    modes, routes = table(), AmendRoutes()
    modes.set_mode("s1", TradingMode.LIVE)
    stamped(modes, routes, signal("o1"))
    modes.set_mode("s1", TradingMode.PAPER)
    assert stamped(modes, routes, signal("r1", replace("o1"))).route == Route.AMEND_LIVE
    assert stamped(modes, routes, signal("c2", cancel("r1"))).route == Route.AMEND_LIVE  # the replacement's order
    assert "c2" not in routes.open and "r1" in routes.open
    assert stamped(modes, routes, signal("x", strategy="other")).route == Route.ROUTER  # not in modes
    assert "x" not in routes.open


def test_finished_orders_are_kept_bounded_and_both_maps_survive_the_snapshot():
    routes = AmendRoutes(keep_done=2)
    for i in range(4):
        routes.record("o" + str(i), Route.LIVE)
    for i in range(3):
        routes.finished("o" + str(i))
    routes.finished("o0")  # again (a replayed report): nothing changes
    assert list(routes.open) == ["o3"] and list(routes.done) == ["o1", "o2"]
    assert routes.amend_route("o0") == Route.AMEND_UNKNOWN  # finished too long ago
    assert routes.amend_route("o2") == Route.AMEND_LIVE  # finished lately: the live group says AMEND_ORDER_DONE
    routes.record("o2", Route.PAPER)  # a replayed signal whose order finished: kept as it was
    assert "o2" not in routes.open
    snap = RiskSnapshot(amend_routes_open=routes.open, amend_routes_done=routes.done)
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=RiskSnapshot)
    again = AmendRoutes(keep_done=2)
    again.restore(back.amend_routes_open, back.amend_routes_done)
    assert (again.open, again.done) == (routes.open, routes.done)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(RiskSnapshot()), type=RiskSnapshot).amend_routes_open == {}
    capped = AmendRoutes(keep_open=2)
    for i in range(3):
        capped.record("o" + str(i), Route.PAPER)
    assert list(capped.open) == ["o1", "o2"]


_STEP = st.one_of(
    st.sampled_from(list(TradingMode)),
    st.tuples(st.sampled_from(["order", "cancel", "replace"]), st.integers(0, 30)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=60))
def test_every_amend_gets_exactly_one_answer_for_the_trader(steps):
    """Both groups' engines, simulated with the engines' own routing (take) and planning (plan_amend):
    for every amend exactly one of them answers the trader (acts on the original, or refuses on the
    amend's own id), and the engine that acts is one holding the original."""
    modes, routes = table(), AmendRoutes()
    held: dict[str, dict[str, Order]] = {PAPER: {}, LIVE: {}}
    for n, step in enumerate(steps):
        if isinstance(step, TradingMode):
            modes.set_mode("s1", step)
            continue
        what, k = step
        rid = "q" + str(n)
        amend = None if what == "order" else (cancel if what == "cancel" else replace)("q" + str(k))
        acc = stamped(modes, routes, signal(rid, amend))
        answers = []
        for group in (PAPER, LIVE):
            got = modes.take(acc, group)
            if got is None:
                continue
            intent = intent_of(got)
            if amend is None:
                held[group][intent.client_order_id] = Order(intent=intent, state=OrderState.ACCEPTED)
                continue
            plan = plan_amend(amend.kind, amend.original_request_id, intent, held[group], n)
            if not is_shadow(got.signal.strategy_id):
                answers.append((group, plan))
            if type(plan) is ReplacePlan:
                held[group][intent.client_order_id] = Order(intent=intent, state=OrderState.ACCEPTED)
        if amend is None:
            continue
        assert len(answers) == 1, (acc.route, answers)
        group, plan = answers[0]
        original = client_order_id_for(signal_id_for(amend.original_request_id))
        if type(plan) in (CancelPlan, ReplacePlan):
            assert original in held[group]
        else:
            assert plan.report.reason == Reason.AMEND_UNKNOWN_ORIGINAL
            assert not any(original in h and h[original].intent.strategy_id == "s1" for h in held.values())
