"""A broker adapter's `orders_of`: the orders of the ids asked, without listing the whole venue."""

from __future__ import annotations

import pytest

from tests.integration.engine_pair import accepted, engine_pair, send_batch
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)


def test_the_broker_adapter_answers_for_just_the_orders_asked(make_config, redis_url):
    """`orders_of` (what a long kill run's settle asks, a chunk at a time): the asked ids it knows,
    the unknown ones left out, without listing the whole venue."""
    cfg = make_config()
    with engine_pair(cfg, redis_url) as pair:
        send_batch(pair.client, cfg.storage.signals_stream, pair.intakes,
                   [accepted("of", i) for i in range(5)])
        wait_for(lambda: len(pair.broker.orders()) == 5)
        ids = sorted(o.client_order_id for o in pair.broker.orders())
        got = pair.broker.orders_of([ids[1], ids[3], "no-such-order"])
    assert sorted(o.client_order_id for o in got) == [ids[1], ids[3]]
