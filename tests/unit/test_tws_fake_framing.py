"""The TWS fake's openOrder (tests/fakes/tws_fake.py) read by ib_async's own decoder at the fake's
server version: every field where ib_async reads it, none missing (one fewer fails to decode)."""

from __future__ import annotations

import pytest
from ib_async.decoder import Decoder

from tests.fakes import tws_fake


class _Wrapper:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def openOrder(self, *args) -> None:
        self.calls.append(args)


class _Writer:
    def __init__(self) -> None:
        self.frames: list[list[str]] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data[4:].decode().split("\0")[:-1])


def _frame(order: dict) -> list[str]:
    w = _Writer()
    tws_fake.TwsFake()._open_order(w, order)
    (fields,) = w.frames
    return fields


ORDER = {"order_id": 3, "perm_id": 700_001, "symbol": "AAPL", "action": "SELL", "qty": 2.0, "type": "LMT",
         "lmt": 3.25, "ref": "NAE-x-1", "filled": 0.0, "px_sum": 0.0, "status": "Submitted", "client_id": 7,
         "contract": ["OPT", "20250117", "150.0", "C", "100", "SMART", "", "USD", "AAPL  250117C00150000", "AAPL"],
         "aux": "", "tif": "GTC", "account": "DU1"}


def test_the_fakes_open_order_is_what_ib_async_reads():
    fields = _frame(ORDER)
    wrapper = _Wrapper()
    Decoder(wrapper, tws_fake.SERVER_VERSION).openOrder(fields)
    ((order_id, contract, order, state),) = wrapper.calls
    assert (order_id, order.orderRef, order.clientId, order.permId) == (3, "NAE-x-1", 7, 700_001)
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice, order.tif, order.account) == (
        "SELL", 2.0, "LMT", 3.25, "GTC", "DU1")
    assert (contract.secType, contract.localSymbol, contract.multiplier, contract.strike) == (
        "OPT", "AAPL  250117C00150000", "100", 150.0)
    assert state.status == "Submitted" and not order.whatIf


def test_the_fakes_open_order_has_no_field_too_few():
    with pytest.raises(ValueError):
        Decoder(_Wrapper(), tws_fake.SERVER_VERSION).openOrder(_frame(ORDER)[:-1])
