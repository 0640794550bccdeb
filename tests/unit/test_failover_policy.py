"""The pure failover policy (node.failover): every decision on an injected clock, no Ray."""

from __future__ import annotations

import pytest

from node.failover import EpochGrant, FailoverPolicy, GrantKind, Lane, LaneState, Role

MS = 1_000_000
T0 = 1_000_000 * MS


def make(engines=("a", "b"), brokers=("p1", "p2"), groups=("g",)) -> FailoverPolicy:
    lanes = {g: Lane(g, list(engines) if g == groups[0] else [g + "-" + e for e in engines], list(brokers),
                     {b: "acct" for b in brokers}) for g in groups}
    policy = FailoverPolicy(lanes, heartbeat_interval_ns=20 * MS, heartbeat_dead_ns=60 * MS, broker_dead_ns=500 * MS)
    policy.listening(T0)
    return policy


def store_answers(policy: FailoverPolicy, until_ns: int, every_ms: int = 50) -> None:
    """The supervisor's store probe, answering every `every_ms` from T0 to `until_ns`."""
    t = T0
    while t <= until_ns:
        policy.on_store(True, t)
        t += every_ms * MS
    policy.on_store(True, until_ns)


def test_a_lane_starts_with_its_first_engine_and_broker_at_epoch_one():
    lane = make().lanes["g"]
    assert (lane.leader, lane.broker, lane.epoch) == ("a", "p1", 1)


@pytest.mark.parametrize(
    "last_beat_ms, now_ms, silent",
    [(0, 60, False), (0, 61, True), (50, 100, False), (50, 111, True)],
)
def test_a_leader_is_silent_after_heartbeat_dead_ns_without_a_leader_beat(last_beat_ms, now_ms, silent):
    policy = make()
    lane = policy.lanes["g"]
    policy.on_store(True, T0 + now_ms * MS)
    policy.on_beat("a", Role.LEADER, 1, T0 + last_beat_ms * MS)
    assert policy.leader_silent(lane, T0 + now_ms * MS) is silent


def test_a_standby_beat_from_the_leader_does_not_keep_it_leading():
    policy = make()
    lane = policy.lanes["g"]
    policy.on_beat("a", Role.STANDBY, 1, T0 + 50 * MS)  # Ray brought it back: it is not leading
    policy.on_store(True, T0 + 100 * MS)
    assert policy.leader_silent(lane, T0 + 100 * MS)


def test_silence_is_judged_only_from_when_the_detectors_started_listening():
    policy = make()
    lane = policy.lanes["g"]
    lane.leader_seen_ns = 0
    policy.listening(T0 + 500 * MS)
    assert not policy.leader_silent(lane, T0 + 550 * MS)
    assert policy.leader_silent(lane, T0 + 561 * MS)


def test_best_standby_is_the_first_live_engine_by_priority_other_than_the_failed_leader():
    policy = make(engines=("a", "b", "c"))
    lane = policy.lanes["g"]
    now = T0 + 100 * MS
    policy.on_beat("a", Role.LEADER, 1, now)
    policy.on_beat("c", Role.STANDBY, 1, now)
    assert policy.best_standby(lane, exclude="a", now=now) == "c"
    policy.on_beat("b", Role.STANDBY, 1, now)
    assert policy.best_standby(lane, exclude="a", now=now) == "b"
    assert policy.best_standby(lane, exclude="a", now=now + 61 * MS) is None  # every beat is stale


def test_the_failed_leader_is_its_own_standby_once_ray_brought_it_back():
    policy = make(engines=("a",))
    lane = policy.lanes["g"]
    now = T0 + 100 * MS
    policy.on_beat("a", Role.LEADER, 1, now)
    assert policy.best_standby(lane, exclude="a", now=now) is None
    policy.on_beat("a", Role.STANDBY, 1, now + 10 * MS)
    assert policy.best_standby(lane, exclude="a", now=now + 10 * MS) == "a"


def test_a_warm_standby_goes_before_the_failed_leader_ray_brought_back_whatever_their_priority():
    # the leader "a" (first by priority) frozen, killed, and restarted by Ray before the watch saw it
    # dead: it beats as a standby again, cold; the warm standby "b" is promoted, not "a"
    policy = make(engines=("a", "b"))
    lane = policy.lanes["g"]
    now = T0 + 100 * MS
    policy.on_beat("b", Role.STANDBY, 1, now)
    policy.on_beat("a", Role.STANDBY, 1, now)
    assert policy.best_standby(lane, exclude="a", now=now) == "b"
    assert policy.ray_target(lane, now) == "b"
    assert policy.best_standby(lane, exclude="a", now=now + 61 * MS) is None  # every beat is stale


def test_ray_never_promotes_a_lone_leader_it_restarted_that_is_the_heartbeat_paths_call():
    # the test_kill_restart[engine] race: the lone engine's restart beats as a standby while Ray's
    # watch still reports the killed incarnation dead; only the heartbeat path may promote it
    policy = make(engines=("a",))
    lane = policy.lanes["g"]
    now = T0 + 3_000 * MS
    policy.on_beat("a", Role.STANDBY, 1, now)
    store_answers(policy, now)
    assert policy.ray_target(lane, now) is None
    assert policy.leader_silent(lane, now)
    assert policy.best_standby(lane, exclude=lane.leader, now=now) == "a"


def test_ray_promotes_another_live_standby():
    policy = make(engines=("a", "b"))
    lane = policy.lanes["g"]
    now = T0 + 10 * MS
    policy.on_beat("b", Role.STANDBY, 1, now)
    assert policy.ray_target(lane, now) == "b"
    policy.on_beat("a", Role.STANDBY, 1, now)  # a (higher priority) is back too, cold: the warm b still
    assert policy.ray_target(lane, now) == "b"


def test_a_frozen_store_defers_heartbeat_failover_and_silence_counts_from_its_return():
    policy = make()
    lane = policy.lanes["g"]
    policy.on_beat("a", Role.LEADER, 1, T0 + 10 * MS)
    policy.on_store(True, T0 + 10 * MS)
    # the store stops answering at +10 ms: every loop stalls, the leader's beats stop
    assert not policy.store_up(T0 + 300 * MS)
    assert not policy.leader_silent(lane, T0 + 5_000 * MS)
    policy.on_store(True, T0 + 6_000 * MS)  # back
    assert not policy.leader_silent(lane, T0 + 6_050 * MS)  # the leader gets a full window to beat
    policy.on_beat("a", Role.LEADER, 1, T0 + 6_040 * MS)
    assert not policy.leader_silent(lane, T0 + 6_090 * MS)
    assert policy.leader_silent(lane, T0 + 6_101 * MS)


def test_every_epoch_grant_is_recorded_in_order_whatever_happens_next():
    policy = make()
    lane = policy.lanes["g"]
    g1 = policy.grant(lane, GrantKind.PROMOTE, "b", "heartbeat", T0 + 1)
    policy.promotion_failed(lane, T0 + 2)
    g2 = policy.grant(lane, GrantKind.PROMOTE, "b", "heartbeat", T0 + 3)
    policy.promoted(lane, "b", T0 + 4)
    g3 = policy.grant(lane, GrantKind.MOVE, "p2", "broker p1 died", T0 + 5)
    policy.moved(lane, "p2", T0 + 6)
    assert [g.epoch for g in policy.grants] == [2, 3, 4]
    assert policy.grants == [g1, g2, g3]
    assert g3 == EpochGrant(group="g", epoch=4, kind=GrantKind.MOVE, to="p2", reason="broker p1 died", granted_ns=T0 + 5)
    assert (lane.leader, lane.broker, lane.epoch) == ("b", "p2", 4)


def test_failed_promotions_back_off_doubling_up_to_the_cap_and_a_success_resets_it():
    policy = make()
    lane = policy.lanes["g"]
    waits = [policy.promotion_failed(lane, T0) for _ in range(10)]
    assert waits[:4] == [20 * MS, 40 * MS, 80 * MS, 160 * MS]
    assert max(waits) == policy.retry_cap_ns
    assert not policy.may_attempt(lane, T0 + policy.retry_cap_ns - 1)
    assert policy.may_attempt(lane, T0 + policy.retry_cap_ns)
    policy.promoted(lane, "b", T0)
    assert policy.may_attempt(lane, T0) and lane.failed_attempts == 0


def test_a_ten_second_store_freeze_grants_a_handful_of_epochs_not_hundreds():
    # issue 9 item 3: every retry is a grant; backoff bounds them (and each one is recorded)
    policy = make()
    lane = policy.lanes["g"]
    now = T0
    while now < T0 + 10_000 * MS:
        if policy.may_attempt(lane, now):
            policy.grant(lane, GrantKind.PROMOTE, "b", "ray", now)
            policy.promotion_failed(lane, now)
        now += 20 * MS
    assert len(policy.grants) <= 12
    assert lane.epoch == 1 + len(policy.grants)


def test_next_broker_is_the_first_live_one_by_priority_other_than_the_lost_one():
    policy = make(brokers=("p1", "p2", "p3"))
    lane = policy.lanes["g"]
    now = T0 + 1_000 * MS
    policy.on_broker_answer("p3", now)
    assert policy.next_broker(lane, exclude="p1", now=now) == "p3"
    policy.on_broker_answer("p2", now)
    assert policy.next_broker(lane, exclude="p1", now=now) == "p2"
    assert policy.next_broker(lane, exclude="p1", now=now + 501 * MS) is None


@pytest.mark.parametrize("seen_ms, now_ms, silent", [(0, 500, False), (0, 501, True), (400, 900, False)])
def test_a_broker_is_silent_after_broker_dead_ns(seen_ms, now_ms, silent):
    policy = make()
    policy.on_broker_answer("p1", T0 + seen_ms * MS)
    assert bool(policy.broker_silent("p1", T0 + now_ms * MS)) is silent


def test_groups_fail_over_independently():
    policy = make(groups=("g", "h"))
    g, h = policy.lanes["g"], policy.lanes["h"]
    policy.on_store(True, T0 + 100 * MS)
    policy.on_beat("h-a", Role.LEADER, 1, T0 + 90 * MS)
    assert policy.leader_silent(g, T0 + 100 * MS) and not policy.leader_silent(h, T0 + 100 * MS)
    policy.grant(g, GrantKind.PROMOTE, "b", "heartbeat", T0 + 100 * MS)
    assert (g.epoch, h.epoch) == (2, 1)


def test_a_restarted_supervisor_restores_lanes_and_never_lowers_an_epoch():
    policy = make(engines=("a", "b"))
    policy.restore([LaneState(name="g", epoch=7, leader="b", broker="p2"),
                    LaneState(name="gone", epoch=9, leader="x", broker="y")])
    lane = policy.lanes["g"]
    assert (lane.epoch, lane.leader, lane.broker) == (7, "b", "p2")
    policy.restore([LaneState(name="g", epoch=3, leader="zz", broker="qq")])  # an older, stranger save
    assert (lane.epoch, lane.leader, lane.broker) == (7, "b", "p2")
    assert policy.checkpoint() == [LaneState(name="g", epoch=7, leader="b", broker="p2")]


def test_a_lane_led_by_an_engine_that_cannot_strand_moves_only_within_its_account():
    policy = make(brokers=("p1", "other", "p3"))
    lane = policy.lanes["g"]
    lane.accounts = {"p1": "A", "other": "B", "p3": "A"}
    now = T0 + 100 * MS
    for b in ("other", "p3"):
        policy.on_broker_answer(b, now)
    assert policy.next_broker(lane, exclude="p1", now=now) == "other"
    assert policy.next_broker(lane, exclude="p1", now=now, same_account_only=True) == "p3"
    assert policy.next_broker(lane, exclude="p1", now=now + 501 * MS, same_account_only=True) is None


def test_no_standby_yet_looks_again_a_beat_later_without_granting_or_backing_off():
    policy = make(engines=("a",))
    lane = policy.lanes["g"]
    policy.nothing_to_promote(lane, T0)
    assert not policy.may_attempt(lane, T0 + 19 * MS) and policy.may_attempt(lane, T0 + 20 * MS)
    assert lane.failed_attempts == 0 and policy.grants == [] and lane.epoch == 1


def test_restart_intensity_allows_max_restarts_in_the_window_then_gives_the_role_up():
    from node.failover import RestartBudget

    budget = RestartBudget(max_restarts=3, window_ns=10_000 * MS)
    assert [budget.allow("ledger", T0 + i * MS) for i in range(3)] == [True, True, True]
    assert budget.allow("validator", T0)  # per role
    assert not budget.allow("ledger", T0 + 5 * MS)
    assert budget.gave_up == {"ledger"}
    assert not budget.allow("ledger", T0 + 60_000 * MS)  # given up stays given up


def test_restarts_spread_wider_than_the_window_are_always_allowed():
    from node.failover import RestartBudget

    budget = RestartBudget(max_restarts=2, window_ns=1_000 * MS)
    assert all(budget.allow("broker:paper", T0 + i * 600 * MS) for i in range(20))
    assert not budget.gave_up


def test_a_leader_just_promoted_gets_a_longer_window_for_its_first_beats_so_two_engines_do_not_ping_pong():
    policy = make()
    lane = policy.lanes["g"]
    now = T0 + 100 * MS
    policy.promoted(lane, "b", now)
    assert lane.leader == "b"
    store_answers(policy, now + 241 * MS)
    assert not policy.leader_silent(lane, now + 200 * MS)  # 4 x 60 ms while settling
    assert policy.leader_silent(lane, now + 241 * MS)
    policy.on_beat("b", Role.LEADER, 2, now + 1_100 * MS)  # settled: the usual 60 ms again
    store_answers(policy, now + 1_161 * MS)
    assert policy.leader_silent(lane, now + 1_161 * MS)


@pytest.mark.parametrize(
    "silent_ms, ray_dead, dead",
    [(400, True, False), (600, True, True), (600, False, False), (2_000, False, False), (2_001, False, True)],
)
def test_a_silent_broker_is_dead_when_ray_says_so_or_after_four_times_its_limit(silent_ms, ray_dead, dead):
    policy = make()
    policy.on_broker_answer("p1", T0)
    assert policy.broker_dead("p1", T0 + silent_ms * MS, ray_dead) is dead


@pytest.mark.parametrize("silent_ms, ray_dead, dead", [(600, True, True), (60_000, False, False)])
def test_a_silent_broker_with_its_venue_inside_is_dead_only_when_ray_says_so(silent_ms, ray_dead, dead):
    policy = make()
    policy.on_broker_answer("p1", T0)
    assert policy.broker_dead("p1", T0 + silent_ms * MS, ray_dead, venue_inside=True) is dead


def test_a_heartbeat_failover_is_due_only_for_the_same_silent_leader_with_a_live_standby():
    policy = make()
    store_answers(policy, T0 + 200 * MS)
    lane = policy.lanes["g"]
    now = T0 + 100 * MS
    assert not policy.heartbeat_failover_due(lane, "a", now)  # b never beat: nothing to promote
    assert lane.retry_at_ns == now + 20 * MS  # look again a beat later, no grant
    assert policy.grants == []
    policy.on_beat("b", Role.STANDBY, 1, now)
    assert policy.heartbeat_failover_due(lane, "a", now)
    assert not policy.heartbeat_failover_due(lane, "b", now)  # another path changed the leader meanwhile
    policy.on_beat("a", Role.LEADER, 1, now)
    assert not policy.heartbeat_failover_due(lane, "a", now)  # it spoke meanwhile


def test_a_restarted_supervisor_judges_silence_only_after_its_grace():
    policy = make()
    lane = policy.lanes["g"]
    restart = T0 + 500 * MS
    policy.listening(restart, grace_ns=policy.settle_ns)  # peers reconnect to its sockets meanwhile
    store_answers(policy, restart + 2_000 * MS)
    assert not policy.leader_silent(lane, restart + policy.settle_ns + 60 * MS)
    assert policy.leader_silent(lane, restart + policy.settle_ns + 61 * MS)
    assert not policy.broker_silent("p1", restart + policy.settle_ns + 500 * MS)


def test_only_a_replaced_leader_of_an_older_epoch_is_a_stale_leader():
    policy = make()
    lane = policy.lanes["g"]
    assert not policy.stale_leader("a", Role.LEADER, 1)  # the group's leader
    policy.grant(lane, GrantKind.MOVE, "p2", "manual", T0)
    assert not policy.stale_leader("a", Role.LEADER, 1)  # a broker move: its own leader lags the epoch
    policy.grant(lane, GrantKind.PROMOTE, "b", "heartbeat", T0)
    assert not policy.stale_leader("a", Role.LEADER, 2)  # still the leader until `b` is promoted
    assert not policy.stale_leader("b", Role.STANDBY, 2)
    policy.promoted(lane, "b", T0)
    assert not policy.stale_leader("b", Role.LEADER, 3)
    assert policy.stale_leader("a", Role.LEADER, 1)  # replaced, or restarted by Ray as it was first wired
    assert not policy.stale_leader("a", Role.STANDBY, 1)
    assert not policy.stale_leader("a", Role.LEADER, 3)  # promoted again at the lane's epoch (a failback)
    assert not policy.stale_leader("nobody", Role.LEADER, 0)


@pytest.mark.parametrize(
    "now_ms, process_alive, silent",
    [(61, False, True), (61, True, False), (999, True, False), (1_001, True, True), (5_000, False, True)],
)
def test_a_silent_leader_whose_process_is_still_there_is_slow_until_alive_silence_ns(now_ms, process_alive, silent):
    """Three missed beats fail a leader over when its process is gone (kill -9); while its process is
    still there (a loaded host, a pause) only after `alive_silence_ns` (1 s by default): a frozen or
    stuck leader still goes."""
    policy = make()
    lane = policy.lanes["g"]
    store_answers(policy, T0 + now_ms * MS)
    policy.on_beat("a", Role.LEADER, 1, T0)
    policy.on_beat("b", Role.STANDBY, 1, T0 + now_ms * MS)
    assert policy.leader_silent(lane, T0 + now_ms * MS, process_alive) is silent
    assert policy.heartbeat_failover_due(lane, "a", T0 + now_ms * MS, process_alive) is silent


def test_a_settling_leader_that_is_still_there_waits_the_longer_of_both_windows():
    policy = FailoverPolicy(make().lanes, heartbeat_interval_ns=20 * MS, heartbeat_dead_ns=400 * MS,
                            broker_dead_ns=500 * MS, alive_silence_ns=1_000 * MS)
    policy.listening(T0)
    lane = policy.lanes["g"]
    policy.promoted(lane, "b", T0)
    store_answers(policy, T0 + 1_200 * MS)
    # promoted just now: silent only after 4 x 400 ms = 1.6 s, longer than the 1 s alive window
    assert not policy.leader_silent(lane, T0 + 999 * MS, process_alive=True)
    assert not policy.leader_silent(lane, T0 + 999 * MS, process_alive=False)
    # settled (promoted over 1 s ago): the usual windows again
    assert policy.leader_silent(lane, T0 + 1_001 * MS, process_alive=True)
    assert policy.leader_silent(lane, T0 + 1_001 * MS, process_alive=False)
