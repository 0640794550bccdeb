"""Cancel and replace signals: the gate's verdicts, the engine's plan, the manager's records."""

from __future__ import annotations

import time

import msgspec
import pytest

from adapters.engines.native import NativeOrderManager
from node.amends import CancelPlan, RefusePlan, ReplacePlan, amendable_by, original_order_id
from node.config import EngineConfig, EngineGroupConfig, IntakeConfig, RouteConfig, SigningConfig
from node.intake import SignalGate
from node.messages import Amend, AmendKind, ExecKind, ExecutionReport, Signal, SignalAccepted, Status, encode
from node.orders import OrderState, signal_id_for
from node.reasons import Reason
from node.risk import PreTradeRisk
from node.risk.config import throughput_limits
from node.router import Router
from node.signing import make_envelope

SECRET = b"s3cret"
SIGNING = SigningConfig(keys={"k": SECRET.decode()})


def signal(rid: str, amend: Amend | None = None, **over) -> Signal:
    fields = dict(request_id=rid, strategy_id="s1", timestamp=time.time(), symbol="AAPL", action="BUY",
                  quantity=10.0, order_type="LIMIT", limit_price=199.0, amend=amend)
    fields.update(over)
    return msgspec.convert(fields, Signal)


def frame(sig: Signal) -> bytes:
    return encode(make_envelope("k", SECRET, encode(sig), time.time_ns()))


def gate(amendable=None) -> tuple[SignalGate, PreTradeRisk]:
    risk = PreTradeRisk(throughput_limits(), ["AAPL"], {"AAPL": 200.0}, 1_000_000.0)
    return SignalGate(SIGNING, IntakeConfig(), risk, amendable=amendable), risk


def cancel_of(rid: str) -> Amend:
    return Amend(kind=AmendKind.CANCEL, original_request_id=rid)


def replace_of(rid: str) -> Amend:
    return Amend(kind=AmendKind.REPLACE, original_request_id=rid)


# ---------------------------------------------------------------- the gate


def test_a_cancel_passes_the_kill_switch_and_a_halt_and_reserves_nothing():
    g, risk = gate()
    risk.kill()
    refused = g.admit(frame(signal("new-1")), time.time_ns())
    assert refused.reply.status is Status.REJECTED and Reason.KILL_SWITCH in refused.reply.reasons
    verdict = g.admit(frame(signal("cx-1", cancel_of("orig-1"))), time.time_ns())
    assert verdict.reply.status is Status.ACCEPTED and verdict.signal.amend.kind is AmendKind.CANCEL
    assert verdict.reply.signal_id == signal_id_for("cx-1")
    assert risk.exposures()["gross_usd"] == 0.0
    risk.unkill()
    risk.set_state("HALTED")
    halted = g.admit(frame(signal("cx-1b", cancel_of("orig-1"))), time.time_ns())
    assert halted.reply.status is Status.ACCEPTED


def test_a_replace_goes_through_risk_as_the_new_order():
    g, risk = gate()
    verdict = g.admit(frame(signal("rp-1", replace_of("orig-1"), quantity=200_000.0)), time.time_ns())
    assert verdict.reply.status is Status.REJECTED and Reason.MAX_QUANTITY in verdict.reply.reasons
    risk.kill()
    verdict = g.admit(frame(signal("rp-2", replace_of("orig-1"))), time.time_ns())
    assert Reason.KILL_SWITCH in verdict.reply.reasons


def test_an_amend_retry_gets_its_first_answer_and_other_content_is_a_replay():
    g, _ = gate()
    first = g.admit(frame(signal("cx-2", cancel_of("orig-2"))), time.time_ns())
    again = g.admit(frame(signal("cx-2", cancel_of("orig-2"))), time.time_ns())
    other = g.admit(frame(signal("cx-2", cancel_of("orig-3"))), time.time_ns())
    assert first.reply.status is Status.ACCEPTED and again.reply.duplicate and again.signal is None
    assert other.reply.reasons == [Reason.REPLAY]


@pytest.mark.parametrize("payload_amend, reason", [
    ({"kind": "CANCEL", "original_request_id": "me"}, Reason.AMEND_INVALID),
    ({"kind": "MODIFY", "original_request_id": "x"}, Reason.SCHEMA_INVALID),
    ({"kind": "CANCEL"}, Reason.SCHEMA_INVALID),
    ({"kind": "CANCEL", "original_request_id": "x", "extra": 1}, Reason.UNKNOWN_FIELD),
    ({"kind": "CANCEL", "original_request_id": ""}, Reason.SCHEMA_INVALID),
])  # fmt: skip
def test_malformed_amends_are_refused_with_a_reason(payload_amend, reason):
    g, _ = gate()
    payload = {"request_id": "me", "strategy_id": "s1", "timestamp": time.time(), "symbol": "AAPL",
               "action": "BUY", "quantity": 1.0, "amend": payload_amend}
    verdict = g.admit(encode(make_envelope("k", SECRET, msgspec.msgpack.encode(payload), time.time_ns())),
                      time.time_ns())
    assert verdict.reply.status is Status.REJECTED and verdict.reply.reasons == [reason]


def test_replaces_for_a_group_whose_engine_cannot_replace_are_refused_and_cancels_pass(make_config):
    cfg = make_config(
        groups=[EngineGroupConfig(name="nat", engines=[EngineConfig(name="a")]),
                EngineGroupConfig(name="nt", engines=[EngineConfig(name="b", kind="nautilus")])],
        routes=[RouteConfig(group="nt", strategies=["nt-*"])],
    )  # fmt: skip
    assert amendable_by(cfg, Router.from_config(cfg).group_of) is None  # both kinds replace now
    g, _ = gate(lambda strategy_id, symbol: not strategy_id.startswith("nt-"))  # the gate's hook still works
    verdict = g.admit(frame(signal("cx-3", replace_of("o"), strategy_id="nt-x")), time.time_ns())
    assert verdict.reply.reasons == [Reason.AMEND_UNSUPPORTED]
    cancel = g.admit(frame(signal("cx-5", cancel_of("o"), strategy_id="nt-x")), time.time_ns())
    assert cancel.reply.status is Status.ACCEPTED
    assert g.admit(frame(signal("cx-4", cancel_of("o"))), time.time_ns()).reply.status is Status.ACCEPTED
    native_only = make_config(groups=[EngineGroupConfig(name="nat", engines=[EngineConfig(name="a")])])
    assert amendable_by(native_only, Router.from_config(native_only).group_of) is None


# ---------------------------------------------------------------- the engine's plan


def accepted(sig: Signal) -> SignalAccepted:
    return SignalAccepted(signal_id_for(sig.request_id), 1, sig)


def report(coid: str, kind: ExecKind, **over) -> ExecutionReport:
    return ExecutionReport(kind=kind, client_order_id=coid, symbol="AAPL", **over)


def live_manager(state: ExecKind | None = ExecKind.NEW) -> NativeOrderManager:
    m = NativeOrderManager()
    m.on_signal(accepted(signal("orig")))
    if state is not None:
        m.on_report(report(original_order_id("orig"), state, exec_id="e1", last_qty=1.0, cum_qty=10.0))
    return m


def test_a_cancel_of_a_live_order_cancels_the_original():
    m = live_manager()
    plan = m.on_amend(accepted(signal("cx", cancel_of("orig"))), True, 5)
    assert plan == CancelPlan(original_order_id("orig"))
    assert m.on_amend(accepted(signal("cx", cancel_of("orig"))), True, 6) is None  # taken once
    assert m.duplicate_amends == 1


def test_a_replace_of_a_live_order_records_the_new_one_submitted():
    m = live_manager()
    plan = m.on_amend(accepted(signal("rp", replace_of("orig"), limit_price=198.0, quantity=4.0)), True, 5)
    assert type(plan) is ReplacePlan and plan.client_order_id == original_order_id("orig")
    assert (plan.intent.quantity, plan.intent.limit_price, plan.intent.request_id) == (4.0, 198.0, "rp")
    new = m.orders[plan.intent.client_order_id]
    assert new.state is OrderState.SUBMITTED and m.replaces[plan.intent.client_order_id] == plan.client_order_id
    m.on_report(report(plan.intent.client_order_id, ExecKind.NEW))
    assert m.replaces == {}


@pytest.mark.parametrize("state, amend, over, reason", [
    (ExecKind.FILL, cancel_of("orig"), {}, Reason.AMEND_ORDER_DONE),
    (ExecKind.CANCELED, replace_of("orig"), {}, Reason.AMEND_ORDER_DONE),
    (None, replace_of("orig"), {}, Reason.AMEND_NOT_LIVE),
    (ExecKind.UNKNOWN, replace_of("orig"), {}, Reason.AMEND_NOT_LIVE),
    (ExecKind.NEW, cancel_of("nope"), {}, Reason.AMEND_UNKNOWN_ORIGINAL),
    (ExecKind.NEW, cancel_of("orig"), {"symbol": "MSFT"}, Reason.AMEND_MISMATCH),
    (ExecKind.NEW, cancel_of("orig"), {"strategy_id": "other"}, Reason.AMEND_MISMATCH),
    (ExecKind.NEW, replace_of("orig"), {"action": "SELL"}, Reason.AMEND_MISMATCH),
    (ExecKind.NEW, replace_of("orig"), {"order_type": "MARKET", "limit_price": None}, Reason.AMEND_MISMATCH),
])  # fmt: skip
def test_what_cannot_be_amended_is_refused_on_the_amends_own_order(state, amend, over, reason):
    m = live_manager(state)
    before = m.orders[original_order_id("orig")].state
    plan = m.on_amend(accepted(signal("am", amend, **over)), True, 7)
    assert type(plan) is RefusePlan
    rep = plan.report
    assert (rep.kind, rep.reason, rep.request_id) == (ExecKind.REJECTED, reason, "am")
    assert rep.client_order_id == original_order_id("am") != original_order_id("orig")
    assert m.orders[original_order_id("orig")].state is before  # the original moves only on the broker's word


def test_a_cancel_of_an_unknown_order_is_sent_it_may_be_at_the_broker():
    m = live_manager(ExecKind.UNKNOWN)
    assert type(m.on_amend(accepted(signal("cx", cancel_of("orig"))), True, 5)) is CancelPlan


def test_a_standby_records_amends_and_a_new_leader_sends_what_is_still_open():
    m = live_manager()
    assert m.on_amend(accepted(signal("rp", replace_of("orig"))), False, 5) is None
    assert m.on_amend(accepted(signal("cx", cancel_of("orig"))), False, 6) is None
    new = original_order_id("rp")
    assert m.orders[new].state is OrderState.PENDING and m.replaces[new] == original_order_id("orig")
    assert new in {i.client_order_id for i in m.pending()}  # a promotion re-drives it (as a replace)
    assert m.held_cancels() == [original_order_id("orig")] and m.held_cancels() == []
    m.on_amend(accepted(signal("cx2", cancel_of("orig"))), False, 7)
    m.on_report(report(original_order_id("orig"), ExecKind.CANCELED))  # the leader's cancel, followed
    assert m.held_cancels() == []
