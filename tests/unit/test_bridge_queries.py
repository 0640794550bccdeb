"""The Nautilus bridge's queries to the broker: each answer to its own question (adapters/engines/nautilus/queries.py).

Hypothesis drives any interleaving of whole-book and one-order queries, answers (in any order, some
never) and given-up askers: an asker gets only the answer to the query it is part of, never another's."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.engines.nautilus.queries import BrokerQueries
from node.messages import ExecKind, OrderSnapshot, OrdersReport, QueryOrders

WHOLE = QueryOrders(3, "e1")


def _one(coid: str) -> QueryOrders:
    return QueryOrders(3, "e1", 1_000, [coid])


def _answer(qid: int, *coids: str) -> OrdersReport:
    return OrdersReport([OrderSnapshot(c, ExecKind.FILL, 1.0, 0.0) for c in coids], query_id=qid)


@pytest.fixture()
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_one_order_answer_never_stands_in_for_the_whole_book(loop):
    q = BrokerQueries()
    book, one = loop.create_future(), loop.create_future()
    book_id, book_sent = q.open(WHOLE, book)
    one_id, one_sent = q.open(_one("a"), one)
    assert book_sent is not None and one_sent is not None and book_id != one_id
    assert (book_sent.query_id, one_sent.query_id) == (book_id, one_id)  # what goes out is tagged

    q.answer(_answer(one_id, "a"))  # the short answer first
    assert one.result().orders[0].client_order_id == "a" and not book.done()
    q.answer(_answer(book_id, "a", "b", "c"))
    assert len(book.result().orders) == 3 and q.waiting() == 0


def test_whole_book_askers_share_one_query_until_it_is_answered_or_given_up(loop):
    q = BrokerQueries()
    first, second = loop.create_future(), loop.create_future()
    qid, sent = q.open(WHOLE, first)
    joined, none = q.open(WHOLE, second)
    assert sent is not None and none is None and joined == qid  # one query out, two askers

    q.give_up(qid, first)  # one asker stops waiting: the other still waits on the same query
    again, still_none = q.open(WHOLE, loop.create_future())
    assert again == qid and still_none is None
    q.answer(_answer(qid, "a"))
    assert second.result().orders and not first.done()

    lone = loop.create_future()
    lost, _ = q.open(WHOLE, lone)
    q.give_up(lost, lone)  # its last asker gave up (the broker never answered): the next goes out afresh
    fresh, out = q.open(WHOLE, loop.create_future())
    assert out is not None and fresh != lost
    q.answer(_answer(lost, "late"))  # the answer to the given-up query: nobody's
    assert q.dropped == 1


_STEP = st.one_of(
    st.tuples(st.just("ask_book")), st.tuples(st.just("ask_one"), st.sampled_from("abc")),
    st.tuples(st.just("answer"), st.integers(0, 20)), st.tuples(st.just("give_up"), st.integers(0, 20)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, max_size=40))
def test_every_asker_gets_only_the_answer_to_its_own_query(steps):
    loop = asyncio.new_event_loop()
    try:
        q = BrokerQueries()
        askers: list[tuple[int, asyncio.Future, str]] = []  # (query_id, future, what it asked: "*" or a coid)
        sent: dict[int, str] = {}  # query_id -> what the query sent asked
        for step in steps:
            if step[0] in ("ask_book", "ask_one"):
                what = "*" if step[0] == "ask_book" else step[1]
                fut = loop.create_future()
                qid, out = q.open(WHOLE if what == "*" else _one(what), fut)
                if out is not None:
                    assert out.query_id == qid and qid not in sent
                    sent[qid] = what
                assert sent.get(qid) == what  # joined only a query asking the same (the whole book)
                askers.append((qid, fut, what))
            elif step[0] == "answer" and sent:
                qid = sorted(sent)[step[1] % len(sent)]
                what = sent[qid]
                q.answer(_answer(qid, *("abc" if what == "*" else what)))
            elif step[0] == "give_up" and askers:
                qid, fut, _ = askers[step[1] % len(askers)]
                if not fut.done():
                    q.give_up(qid, fut)
        for qid, fut, what in askers:
            if fut.done():
                assert fut.result().query_id == qid
                assert [o.client_order_id for o in fut.result().orders] == list("abc" if what == "*" else what)
    finally:
        loop.close()
