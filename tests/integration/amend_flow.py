"""Cancel and replace signals end to end through a running node (shared by the paper venue's test and
the brokers' test against the Schwab and TWS fakes): two resting LIMIT orders; one canceled by a
cancel signal (and its retry answered as a retry), the other replaced by a replace signal; a second
cancel of a finished order and a cancel of an order that never was are refused with their reasons."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from node.client import ExecutionClient
from node.messages import ExecKind, ExecutionReport
from node.orders import client_order_id_for, signal_id_for
from node.reasons import Reason


def coid(request_id: str) -> str:
    return client_order_id_for(signal_id_for(request_id))


@dataclass
class AmendRun:
    """The ids of one run of the flow, and every report the node published for its strategy."""

    first: str
    second: str
    replacement: str
    reports: list[ExecutionReport] = field(default_factory=list)

    def of(self, request_id: str) -> list[ExecutionReport]:
        return [r for r in self.reports if r.client_order_id == coid(request_id)]


def amend_flow(node, strategy: str, symbol: str, price: float, timeout_s: float = 30.0) -> AmendRun:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = strategy + "-" + str(time.time_ns())
    run = AmendRun(first=tag + "-a", second=tag + "-b", replacement=tag + "-rp")
    limit = round(price * 0.97, 2)  # rests (a buy below the market) and stays inside the price collar

    def signal(rid: str, **over) -> dict:
        d = {"request_id": rid, "strategy_id": strategy, "symbol": symbol, "action": "BUY", "quantity": 5.0,
             "order_type": "LIMIT", "limit_price": limit, "timestamp": time.time()}
        d.update(over)
        return d

    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        c.subscribe(strategy)  # returns once the relay holds it

        def wait(pred) -> None:
            deadline = time.monotonic() + timeout_s
            while not pred():
                assert time.monotonic() < deadline, [(r.client_order_id, r.kind, r.reason) for r in run.reports]
                rep = c.next_event(0.2)
                if rep is not None:
                    run.reports.append(rep)

        def kinds(rid: str) -> list[tuple[str, str]]:
            return [(str(r.kind), r.reason) for r in run.of(rid)]

        for rid in (run.first, run.second):
            assert c.send_signal(signal(rid)).status == "ACCEPTED"
        wait(lambda: ("NEW", "") in kinds(run.first) and ("NEW", "") in kinds(run.second))

        cancel = signal(tag + "-cx", amend={"kind": "CANCEL", "original_request_id": run.first})
        assert c.send_signal(cancel).status == "ACCEPTED"
        again = c.send_signal(cancel)  # the same request again: its first answer, no second cancel
        assert again.status == "ACCEPTED" and again.duplicate
        replace = signal(run.replacement, quantity=3.0, limit_price=round(price * 0.96, 2),
                         amend={"kind": "REPLACE", "original_request_id": run.second})
        replaced = c.send_signal(replace)
        assert replaced.status == "ACCEPTED", replaced
        wait(lambda: any(k == "CANCELED" for k, _ in kinds(run.first))
             and ("CANCELED", Reason.REPLACED) in kinds(run.second) and ("NEW", "") in kinds(run.replacement))

        late = signal(tag + "-cx2", amend={"kind": "CANCEL", "original_request_id": run.first})
        never = signal(tag + "-cx3", amend={"kind": "CANCEL", "original_request_id": tag + "-never"})
        assert c.send_signal(late).status == c.send_signal(never).status == "ACCEPTED"
        wait(lambda: kinds(tag + "-cx2") == [("REJECTED", Reason.AMEND_ORDER_DONE)]
             and kinds(tag + "-cx3") == [("REJECTED", Reason.AMEND_UNKNOWN_ORIGINAL)])

        cleanup = signal(tag + "-cx4", quantity=3.0, amend={"kind": "CANCEL", "original_request_id": run.replacement})
        assert c.send_signal(cleanup).status == "ACCEPTED"
        wait(lambda: any(k == "CANCELED" for k, _ in kinds(run.replacement)))
        assert kinds(tag + "-cx") == [] and kinds(tag + "-cx4") == []  # a cancel's answer is its original's report
        assert [k for k, _ in kinds(run.replacement)] == ["NEW", "CANCELED"]
    return run


def broker_orders(node, broker: str, run: AmendRun) -> dict[str, ExecKind]:
    """The broker adapter's own record of the run's orders (client order id -> last state)."""
    return {o.client_order_id: o.kind for o in node.call("broker:" + broker, "orders")
            if o.client_order_id.startswith("NAE-") and o.client_order_id in
            {coid(run.first), coid(run.second), coid(run.replacement)}}
