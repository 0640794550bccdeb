"""A process Ray brought back never leads on its own: it opens as a standby and waits to be promoted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.engine_opening import opened_before, opening

_ROLES = st.sampled_from(["leader", "standby"])
_IDS = st.text(alphabet="0123456789abcdef", max_size=16)


@given(role=_ROLES, recover=st.booleans())
def test_a_restarted_engine_opens_as_a_standby_recovering_nothing(role: str, recover: bool) -> None:
    assert opening(role, recover, restarted=True) == ("standby", False)


@given(role=_ROLES, recover=st.booleans())
def test_a_first_open_keeps_its_wiring_and_only_a_leader_recovers(role: str, recover: bool) -> None:
    assert opening(role, recover, restarted=False) == (role, recover and role == "leader")


@given(spawn=_IDS, previous=st.one_of(st.none(), _IDS, _IDS.map(str.encode)))
def test_only_its_own_spawn_id_found_means_it_opened_before(spawn: str, previous) -> None:
    found = previous.decode() if isinstance(previous, bytes) else previous
    assert opened_before(previous, spawn) == (bool(spawn) and found == spawn)
