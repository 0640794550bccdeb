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
from node.messages import ExecKind, ExecutionReport
from node.stages import StageClock, Stage
from node.stats import (
    STAGE_FIELDS,
    EngineStats,
    GcFields,
    KernelStats,
    LedgerStats,
    ReconcilerStats,
    StageFields,
    SupervisorStats,
    ValidatorStats,
    to_plain,
)


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


@pytest.mark.parametrize("reply", [KernelStatsReport(_kernel_stats(sent=5)), KernelPromoted(epoch=2, resent=1, took_ms=1.5),
                                   KernelPromoted(epoch=2, followed=[ExecutionReport(
                                       kind=ExecKind.FILL, client_order_id="NAE-1", exec_id="X-1", last_qty=1.0)])])
def test_control_replies_round_trip(reply: object) -> None:
    assert reply_decoder.decode(encode_control(reply)) == reply


def test_a_frame_of_another_shape_is_refused_not_guessed() -> None:
    with pytest.raises(msgspec.ValidationError):
        command_decoder.decode(msgspec.msgpack.encode({"op": "launch"}))


# ---------------------------------------------------------------- validator, ledger, reconciler, supervisor

_HIST = {"hist": True, "buckets": [[0.001, 3]], "sum_s": 0.002, "count": 3}


def _validator_plain() -> dict:
    return {
        "accepted": 10, "rejected": 2, "store_failures": 0, "in_doubt": 0, "in_doubt_logged": 0, "in_doubt_voided": 0,
        "unsent": 0, "warmed": 4, "fallback_frames": 1, "fallback_errors": 0, "wake_p50_us": 12.5, "wake_p99_us": 80.0,
        "append_p50_us": 300.0, "append_p99_us": 900.0, "loop_errors": 0, "last_error": "", "unknown_orders": 1,
        "unknown_symbols": ["AAPL"], "reply_hist": _HIST, "append_hist": _HIST,
        "restored": {"snapshot": True, "signals_replayed": 3, "reports_replayed": 2, "unknown_symbols": [],
                     "restore_ms": 4.2},
        "unsaved_controls": 0, "snapshots_saved": 3, "snapshot_failures": 0, "snapshot_writing": False,
        "snapshot_last_error": "", "snapshot_write_hist": _HIST, "reasons": {"STRATEGY_PAUSED": 2}, "peer_limited": 0, "peers": 1,
        "stage_append_hist": _HIST, **GcWatch().snapshot(),
    }  # fmt: skip


def _ledger_plain() -> dict:
    return {"signals": 3, "events": 5, "monitoring": 0, "dead_letters": 0, "entries": 8, "batches": 2, "claimed": 0,
            "errors": 0, "refused_rows": 0, "running": True, "last_error": "", "commit_p50_us": 800.0,
            "commit_p99_us": 2_000.0, "commit_hist": _HIST}  # fmt: skip


def _reconciler_plain() -> dict:
    return {"runs": 2, "mismatched_runs": 1, "errors": 0, "booked": 0, "discrepancies": {"POSITION_DRIFT": 1},
            "last_run_id": "r-2", "last_matched": None, "last_took_ms": 0.0, "last_trigger": "", "last_error": "",
            "failed_halt": False, "lifted": 0}


def _supervisor_plain() -> dict:
    lane = {"epoch": 3, "leader": "a", "broker": "paper", "engines": ["a", "b"], "brokers": ["paper"]}
    return {
        "epoch": 3, "leader": "a", "restarts": [{"role": "ledger", "reason": "dead"}], "start_took_ms": {"actors": 900.0},
        "failovers": [{"epoch": 3, "from": "b", "to": "a"}], "broker_failovers": [], "groups": {"default": lane},
        "epoch_grants": 3, "recorder": {"written": 4, "pending": 0, "dropped": 0, "store_failures": 0},
        "stale_demotes": 0, "health": {"ok": True, "gave_up": []}, "watch_errors": 0, "resumed": {},
        "last_watch_error": "", "degraded": [],
    }  # fmt: skip


_OPTIONAL = {ValidatorStats: {"stage_append_hist"}}  # a histogram never observed has no key
_PLAIN = [(ValidatorStats, _validator_plain), (LedgerStats, _ledger_plain), (ReconcilerStats, _reconciler_plain),
          (SupervisorStats, _supervisor_plain)]


@pytest.mark.parametrize(("struct", "plain"), _PLAIN)
def test_the_dict_an_actor_sent_converts_to_its_struct_and_back_unchanged(struct: type, plain) -> None:
    data = plain()
    assert to_plain(msgspec.convert(data, struct)) == data


@pytest.mark.parametrize(("struct", "plain"), _PLAIN)
def test_a_missing_field_fails(struct: type, plain) -> None:
    for field in plain():
        data = plain()
        del data[field]
        if field in _OPTIONAL.get(struct, ()):
            continue
        with pytest.raises(msgspec.ValidationError, match=field):
            msgspec.convert(data, struct)


def test_the_ledger_says_degraded_only_while_not_writing_and_reconciler_keeps_last_matched_none() -> None:
    quiet = to_plain(msgspec.convert(_ledger_plain(), LedgerStats))
    assert "degraded" not in quiet
    down = to_plain(msgspec.convert({**_ledger_plain(), "degraded": "ledger not writing: x"}, LedgerStats))
    assert down["degraded"] == "ledger not writing: x"
    assert to_plain(msgspec.convert(_reconciler_plain(), ReconcilerStats))["last_matched"] is None  # a required key


def test_a_counter_of_the_wrong_type_fails() -> None:
    with pytest.raises(msgspec.ValidationError, match="accepted"):
        msgspec.convert({**_validator_plain(), "accepted": "ten"}, ValidatorStats)


def test_only_optional_fields_have_a_default_so_a_counter_at_zero_is_still_there() -> None:
    """The structs leave out fields at their default (`omit_defaults`, for the histograms of stages
    never observed): a counter with a default of 0 vanished while 0, and a reader's `["cancels"]`
    raised KeyError until the first cancel. Only a None default is allowed."""
    import node.stats as stats

    structs = [v for v in vars(stats).values()
               if isinstance(v, type) and issubclass(v, msgspec.Struct) and v.__module__ == stats.__name__]
    assert len(structs) > 8
    defaulted = [(s.__name__, f.name, f.default) for s in structs for f in msgspec.structs.fields(s)
                 if (f.default is not msgspec.NODEFAULT and f.default is not None)
                 or f.default_factory is not msgspec.NODEFAULT]
    assert defaulted == []
