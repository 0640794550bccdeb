"""The refusal of a node whose streams another node id owns: one line naming the owner and the keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.config import NodeConfig, StorageConfig
from node.scratch import isolated
from node.stream_claim import STREAM_FIELDS, refusal, streams

_ID = st.text(alphabet="abc-_.1", min_size=1, max_size=10)


def test_every_stream_field_of_the_config_is_claimed() -> None:
    named = streams(StorageConfig())
    fields = {f for f in StorageConfig.__struct_fields__ if f.endswith("_stream")}
    assert set(STREAM_FIELDS) == fields
    assert set(named) == {"storage." + f for f in fields}


def test_a_scratch_node_names_every_stream_under_its_own_id() -> None:
    cfg = isolated(NodeConfig())
    assert all(s.startswith(cfg.node_id + ".") for s in streams(cfg.storage).values())


@given(mine=_ID, other=_ID, taken=st.sets(st.sampled_from(STREAM_FIELDS), min_size=1))
def test_the_refusal_names_the_owner_and_exactly_the_keys_to_change(mine: str, other: str, taken: set[str]) -> None:
    storage = StorageConfig()
    named = streams(storage)
    foreign = {getattr(storage, f): other for f in taken}
    line = str(refusal(mine, foreign, named))
    assert "\n" not in line
    assert repr(other) in line and repr(mine) in line
    for field in STREAM_FIELDS:
        assert (("storage." + field) in line) == (field in taken)
