"""The supervisor's liveness verdicts (node.liveness): dead by evidence, never by a slow answer."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from node.control import Role
from node.liveness import Answer, LivenessPolicy, Process, ResumeVerdict, Verdict, resume_verdict

S = 1_000_000_000
T0 = 1_000 * S


def started(hung_after_s: int = 30) -> LivenessPolicy:
    policy = LivenessPolicy(hung_after_ns=hung_after_s * S)
    policy.started("validator", T0)
    return policy


@given(st.lists(st.integers(min_value=0, max_value=30 * S), min_size=1, max_size=50),
       st.sampled_from([Process.ALIVE, Process.UNKNOWN]))
def test_a_slow_actor_whose_process_is_there_is_never_restarted_within_the_hung_deadline(offsets, process):
    policy = started()
    for offset in sorted(offsets):
        assert policy.judge("validator", Answer.LATE, process, T0 + offset) == Verdict.SLOW


@given(st.sampled_from([Answer.LATE, Answer.DIED, Answer.NO]), st.integers(min_value=0, max_value=10 * S))
def test_a_process_that_is_gone_is_dead_at_once(answer, after_ns):
    assert started().judge("validator", answer, Process.GONE, T0 + after_ns) == Verdict.DEAD


@given(st.sampled_from(list(Process)), st.integers(min_value=0, max_value=10 * S))
def test_rays_death_notice_or_the_actors_own_no_is_dead_at_once(process, after_ns):
    policy = started()
    assert policy.judge("validator", Answer.DIED, process, T0 + after_ns) == Verdict.DEAD
    assert policy.judge("validator", Answer.NO, process, T0 + after_ns) == Verdict.DEAD


@given(st.sampled_from(list(Process)))
def test_an_answer_is_proof_of_life_whatever_an_old_pid_says(process):
    assert started().judge("validator", Answer.YES, process, T0 + S) == Verdict.UP


@pytest.mark.parametrize("process", [Process.ALIVE, Process.UNKNOWN])
def test_silent_past_the_hung_deadline_with_its_process_there_is_hung(process):
    policy = started(hung_after_s=30)
    assert policy.judge("validator", Answer.LATE, process, T0 + 30 * S) == Verdict.SLOW
    assert policy.judge("validator", Answer.LATE, process, T0 + 30 * S + 1) == Verdict.HUNG


def test_an_answer_starts_the_silence_again():
    policy = started(hung_after_s=30)
    assert policy.judge("validator", Answer.YES, Process.ALIVE, T0 + 20 * S) == Verdict.UP
    assert policy.judge("validator", Answer.LATE, Process.ALIVE, T0 + 45 * S) == Verdict.SLOW
    assert policy.judge("validator", Answer.LATE, Process.ALIVE, T0 + 50 * S + 1) == Verdict.HUNG


def test_a_replacement_starts_with_no_silence_held_against_it():
    policy = started(hung_after_s=30)
    assert policy.judge("validator", Answer.LATE, Process.ALIVE, T0 + 40 * S) == Verdict.HUNG
    policy.started("validator", T0 + 41 * S)
    assert policy.judge("validator", Answer.LATE, Process.ALIVE, T0 + 42 * S) == Verdict.SLOW


def test_a_role_never_seen_counts_its_silence_from_the_first_look():
    policy = LivenessPolicy(hung_after_ns=30 * S)  # a restarted supervisor adopts children it did not start
    assert policy.judge("ledger", Answer.LATE, Process.UNKNOWN, T0) == Verdict.SLOW
    assert policy.judge("ledger", Answer.LATE, Process.UNKNOWN, T0 + 30 * S + 1) == Verdict.HUNG


def test_roles_are_judged_apart():
    policy = started(hung_after_s=30)
    policy.started("ledger", T0 + 29 * S)
    assert policy.judge("validator", Answer.LATE, Process.ALIVE, T0 + 31 * S) == Verdict.HUNG
    assert policy.judge("ledger", Answer.LATE, Process.ALIVE, T0 + 31 * S) == Verdict.SLOW


@pytest.mark.parametrize(
    "view, process, verdict",
    [
        ((Role.LEADER, 3), Process.ALIVE, ResumeVerdict.KEEP),
        ((Role.LEADER, 3), Process.GONE, ResumeVerdict.KEEP),  # it answers as the leader: an old pid
        ((Role.STANDBY, 1), Process.ALIVE, ResumeVerdict.PROMOTE),  # Ray restarted the process that led
        ((Role.STANDBY, 1), Process.UNKNOWN, ResumeVerdict.PROMOTE),
        (None, Process.GONE, ResumeVerdict.PROMOTE),
        (None, Process.ALIVE, ResumeVerdict.WAIT),  # slow is not dead: the heartbeats decide
        (None, Process.UNKNOWN, ResumeVerdict.WAIT),
    ],
)
def test_a_restarted_supervisor_promotes_at_once_only_when_the_process_that_led_is_gone(view, process, verdict):
    assert resume_verdict(view, process) == verdict
