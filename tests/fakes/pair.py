"""Both broker fakes at once (Schwab's HTTP API and TWS's socket API), quoting the same prices."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.fakes.schwab_fake import SchwabFake
from tests.fakes.tws_fake import TwsFake


@contextmanager
def broker_fakes(prices: dict[str, float]) -> Iterator[tuple[SchwabFake, TwsFake]]:
    schwab = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
    schwab.prices = dict(prices)
    tws = TwsFake(prices=dict(prices)).start()
    try:
        yield schwab, tws
    finally:
        schwab.stop()
        tws.stop()
