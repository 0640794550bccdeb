"""The bridge's queries to the broker, each answer matched to its own question.

An engine can have several QueryOrders out at once on its one DEALER: Nautilus's reconciliation asks
for the whole book while its in-flight check asks about one order, and a promotion asks about the
orders it holds. Each query is tagged with a `query_id` the broker echoes in its OrdersReport, so a
one-order answer never stands in for the whole book (reconciliation would read every other order as
gone), nor a stale answer for a newer question. Whole-book queries share one query out at a time: its
answer serves every asker waiting on it. A query the broker never answers (refused under a fenced
epoch, lost with a dead broker) is given up by its askers' deadlines; a late answer to it is dropped.
"""

from __future__ import annotations

import asyncio

import msgspec

from node.messages import OrdersReport, QueryOrders


class BrokerQueries:
    def __init__(self) -> None:
        self._waiters: dict[int, list[asyncio.Future]] = {}
        self._whole_book = 0  # the query_id of the whole-book query out, 0 = none
        self._last_id = 0
        self.dropped = 0  # answers nobody awaited any more

    def open(self, query: QueryOrders, fut: asyncio.Future) -> tuple[int, QueryOrders | None]:
        """Register `fut` for the answer to `query`: (its query_id, the tagged query to send, or None
        when it joins a whole-book query already out)."""
        whole_book = query.since_ns <= 0 and not query.client_order_ids
        if whole_book and self._whole_book:
            self._waiters[self._whole_book].append(fut)
            return self._whole_book, None
        self._last_id += 1
        qid = self._last_id
        if whole_book:
            self._whole_book = qid
        self._waiters[qid] = [fut]
        return qid, msgspec.structs.replace(query, query_id=qid)

    def answer(self, msg: OrdersReport) -> None:
        """The broker's answer: to whoever awaits its query."""
        if msg.query_id == self._whole_book:
            self._whole_book = 0
        waiters = self._waiters.pop(msg.query_id, None)
        if waiters is None:
            self.dropped += 1
            return
        for fut in waiters:
            if not fut.done():
                fut.set_result(msg)

    def give_up(self, qid: int, fut: asyncio.Future) -> None:
        """`fut`'s asker stopped waiting. The last asker of a whole-book query lets the next one go
        out afresh instead of waiting on a query that may never be answered."""
        waiters = self._waiters.get(qid)
        if waiters is None or fut not in waiters:
            return
        waiters.remove(fut)
        if not waiters:
            del self._waiters[qid]
            if self._whole_book == qid:
                self._whole_book = 0

    def waiting(self) -> int:
        """Queries out and awaited."""
        return len(self._waiters)
