"""What a restarted supervisor reads back and decides (node.supervisor_checkpoint, FailoverPolicy.adopt):
pure, no Ray, no Redis."""

from __future__ import annotations

import pytest

from node.failover import FailoverPolicy, GrantKind, Lane, LaneState
from node.supervisor_checkpoint import SupervisorCheckpoint, checkpoint_key, decode, encode, orphans

MS = 1_000_000


def policy() -> FailoverPolicy:
    lane = Lane("g", ["a", "b", "c"], ["p1", "p2"], {"p1": "acct", "p2": "acct"})
    return FailoverPolicy({"g": lane}, heartbeat_interval_ns=20 * MS, heartbeat_dead_ns=60 * MS,
                          broker_dead_ns=500 * MS)


def test_a_checkpoint_round_trips_through_its_bytes():
    saved = SupervisorCheckpoint(
        lanes=[LaneState(name="g", epoch=7, leader="b", broker="p2")],
        children={"validator": "n.validator@1", "engine:a": "n.engine:a", "relay": "n.relay"},
        registry={"intake": "tcp://127.0.0.1:5555", "heartbeat": "tcp://127.0.0.1:5556"},
        engine_ports={"a": 6000}, broker_ports={"p1": 6001}, restarts=[1_000 * MS, 2_000 * MS],
    )
    assert decode(encode(saved)) == saved
    assert checkpoint_key("n") == "n.supervisor.checkpoint"


@pytest.mark.parametrize("raw", [None, b"", b"{", b'{"lanes": 3}', b"\x00\xff"])
def test_an_absent_or_unreadable_checkpoint_is_none(raw):
    assert decode(raw) is None


def test_orphans_are_the_nodes_actors_no_role_holds_except_the_supervisor():
    named = ["n.supervisor", "n.validator@1", "n.validator@2", "n.engine:a", "other.validator@1", "n.relay"]
    children = {"validator": "n.validator@2", "engine:a": "n.engine:a", "relay": "n.relay"}
    assert orphans(named, "n.", children, keep=("n.supervisor",)) == ["n.validator@1"]


def test_restore_then_adopt_takes_the_engines_word_over_a_lagging_checkpoint():
    pol = policy()
    lane = pol.lanes["g"]
    pol.restore([LaneState(name="g", epoch=3, leader="a", broker="p2")])
    assert (lane.epoch, lane.leader, lane.broker) == (3, "a", "p2")
    # b was promoted at epoch 4 just before the supervisor died; its checkpoint never reached Redis
    pol.adopt(lane, {"a": ("standby", 3), "b": ("leader", 4), "c": ("standby", 1)})
    assert lane.leader == "b"
    assert lane.epoch == 5  # the highest epoch seen, plus one for a grant that may still be on its way


def test_adopt_keeps_the_checkpointed_leader_when_no_engine_leads():
    pol = policy()
    lane = pol.lanes["g"]
    pol.restore([LaneState(name="g", epoch=6, leader="c", broker="p1")])
    pol.adopt(lane, {"a": ("standby", 2)})  # c is dead (Ray restarts it): the heartbeat path decides
    assert (lane.leader, lane.epoch) == ("c", 7)


def test_adopt_never_lowers_an_epoch_and_ignores_engines_of_other_groups():
    pol = policy()
    lane = pol.lanes["g"]
    pol.restore([LaneState(name="g", epoch=9, leader="a", broker="p1")])
    pol.adopt(lane, {"a": ("standby", 2), "zz": ("leader", 50)}, margin=0)
    assert (lane.leader, lane.epoch) == ("a", 9)
    assert pol.grant(lane, GrantKind.PROMOTE, "b", "heartbeat", 0).epoch == 10


def test_the_supervisors_restart_intensity_counts_across_its_processes():
    """Each restarted supervisor seeds its budget from the checkpoint, counts itself and writes the
    history back: the sixth restart within 60 s is refused (given up), one a minute later is not."""
    from node.failover import RestartBudget

    history: list[int] = []
    verdicts = []
    for t_s in (0, 10, 20, 30, 40, 50):  # six restarts, each a new process
        budget = RestartBudget()
        budget.seed("supervisor", history)
        verdicts.append(budget.allow("supervisor", t_s * 1_000 * MS))
        history = budget.history("supervisor")
    assert verdicts == [True] * 5 + [False]
    later = RestartBudget()
    later.seed("supervisor", history)
    assert later.allow("supervisor", 200_000 * MS)
    assert decode(b'{"lanes": [], "children": {}, "registry": {}}').restarts == []  # an older checkpoint
