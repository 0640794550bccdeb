"""The actors' stats structs (node.stats) and the Nautilus kernel's control channel (typed, defined once)."""

from __future__ import annotations

import msgspec
import pytest

from adapters.engines.nautilus.control import (
    AskKernelStats,
    KernelPromoted,
    KernelStatsReport,
    PromoteKernel,
    StopKernel,
    command_decoder,
    encode_control,
    reply_decoder,
)
from node.gcwatch import GcWatch
from node.stages import StageClock, Stage
from node.stats import STAGE_FIELDS, EngineStats, GcFields, KernelStats, StageFields, to_plain


def test_every_stage_and_every_gc_field_has_its_struct_field() -> None:
    assert set(STAGE_FIELDS) <= set(StageFields.__struct_fields__)
    assert set(GcWatch().snapshot()) == set(GcFields.__struct_fields__) - {"loop_errors", "last_error"}


def _kernel_stats(**over: object) -> KernelStats:
    fields = {f: 0 for f in KernelStats.__struct_fields__}
    fields.update(trader_running=True, standby=False)
    fields.update(over)
    return KernelStats(**fields)  # type: ignore[arg-type]


def test_a_stats_struct_leaves_as_the_flat_dict_it_was() -> None:
    clock = StageClock()
    clock.observe(Stage.PUBLISH, 1_000)
    fields = {f: 0 for f in EngineStats.__struct_fields__ if not f.startswith("stage_") and not f.startswith("gc")}
    fields.update(role="leader", group="default", broker="tcp://x", checkpoint="0", last_error="", tuned={},
                  fill_hist={"hist": True, "buckets": [], "sum_s": 0.0, "count": 0})
    stats = EngineStats(**fields, **clock.snapshot(), **GcWatch().snapshot())  # type: ignore[arg-type]
    plain = to_plain(stats)
    assert type(plain) is dict and plain["role"] == "leader" and plain["last_error"] == ""
    assert "stage_publish_hist" in plain and "stage_append_hist" not in plain  # never observed: no key
    assert plain["recovered_in_flight"] == 0  # a zero counter is there (only None histograms are left out)
    assert to_plain({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("cmd", [StopKernel(), AskKernelStats(), PromoteKernel(epoch=3, expect=10)])
def test_control_commands_round_trip(cmd: object) -> None:
    assert command_decoder.decode(encode_control(cmd)) == cmd


@pytest.mark.parametrize("reply", [KernelStatsReport(_kernel_stats(sent=5)), KernelPromoted(epoch=2, resent=1, took_ms=1.5)])
def test_control_replies_round_trip(reply: object) -> None:
    assert reply_decoder.decode(encode_control(reply)) == reply


def test_a_frame_of_another_shape_is_refused_not_guessed() -> None:
    with pytest.raises(msgspec.ValidationError):
        command_decoder.decode(msgspec.msgpack.encode({"op": "launch"}))
