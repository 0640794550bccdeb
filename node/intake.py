"""The signal gate: one frame in, a verdict out (pure logic, no I/O).

Order of checks, cheapest and most fundamental first: frame size, envelope decode, signature and
timestamp, payload schema, size and price rules, staleness and dedupe, then pre-trade risk.
Every refusal is a `Reply` with precise reason codes; nothing raises past `admit`.

The gate remembers its verdicts per request_id (see `DedupeMemory`), so a retry of a signal gets
the answer it got the first time and never a second order.
"""

from __future__ import annotations

from typing import Callable, Protocol

import msgspec

from node.config import IntakeConfig, SigningConfig
from node.messages import (
    Discover,
    OrderType,
    Reply,
    Signal,
    SignedSignal,
    Status,
    intake_request_decoder,
    signal_decoder,
    signal_json_decoder,
)
from node.orders import signal_id_for
from node.reasons import Reason
from node.signing import UNKNOWN_DIGEST, DedupeMemory, Verifier, payload_digest

_NEEDS_LIMIT = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_NEEDS_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


class RiskCheck(Protocol):
    """What the gate needs of pre-trade risk (`node.risk.PreTradeRisk` is the real one)."""

    def check(self, signal: Signal, now_ns: int) -> list[Reason]: ...
    def commit(self, signal: Signal, now_ns: int) -> None: ...
    def release(self, signal: Signal, now_ns: int) -> None: ...


class NoRisk:
    def check(self, signal: Signal, now_ns: int) -> list[Reason]:
        return []

    def commit(self, signal: Signal, now_ns: int) -> None:
        pass

    def release(self, signal: Signal, now_ns: int) -> None:
        pass


def _reject(request_id: str, reasons: list[Reason], detail: str = "", signal_id: str = "") -> Reply:
    return Reply(status=Status.REJECTED, request_id=request_id, signal_id=signal_id, reasons=list(reasons), detail=detail)


def schema_reason(exc: msgspec.ValidationError) -> Reason:
    text = str(exc)
    if text.startswith("Object contains unknown field"):
        return Reason.UNKNOWN_FIELD
    if "Expected `float` >" in text or "Expected `float` <" in text or "Expected `float` >=" in text:
        return Reason.INVALID_NUMBER
    return Reason.SCHEMA_INVALID


def _request_id_of(payload: bytes, fmt: str = "msgpack") -> str:
    """Best effort: the request_id of a payload that failed the schema, to echo it back."""
    try:
        raw = msgspec.json.decode(payload) if fmt == "json" else msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        return ""
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid[:128] if isinstance(rid, str) else ""


def order_rule_violations(sig: Signal) -> list[Reason]:
    """Size and price rules the schema alone cannot say."""
    reasons: list[Reason] = []
    if (sig.quantity is None) == (sig.notional is None):
        reasons.append(Reason.SIZE_SPEC)
    kind = sig.order_type
    if (kind in _NEEDS_LIMIT and sig.limit_price is None) or (kind in _NEEDS_STOP and sig.stop_price is None):
        reasons.append(Reason.PRICE_REQUIRED)
    if (kind not in _NEEDS_LIMIT and sig.limit_price is not None) or (
        kind not in _NEEDS_STOP and sig.stop_price is not None
    ):
        reasons.append(Reason.PRICE_NOT_ALLOWED)
    return reasons


class Verdict:
    """What the gate decided for one frame. `signal` is set only when it was accepted."""

    __slots__ = ("reply", "signal", "discover")

    def __init__(self, reply: Reply | None, signal: Signal | None = None, discover: bool = False) -> None:
        self.reply = reply
        self.signal = signal
        self.discover = discover


_DISCOVER = Verdict(None, None, True)


class SignalGate:
    """Authenticates, decodes and checks signals; remembers verdicts for idempotent retries."""

    def __init__(
        self,
        signing: SigningConfig,
        intake: IntakeConfig,
        risk: RiskCheck | None = None,
        clock_ns: Callable[[], int] | None = None,
        route: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self._verifier = Verifier(signing.keys, signing.timestamp_window_ms)
        self._memory: DedupeMemory[Reply] = DedupeMemory(signing.dedupe_window_secs, signing.dedupe_max_entries)
        self._max_frame = intake.max_frame_bytes
        self._risk = risk or NoRisk()
        self._route = route  # (strategy_id, symbol) -> engine group, None: refused (NO_ROUTE)
        self.counts: dict[str, int] = {}

    @property
    def risk(self) -> RiskCheck:
        return self._risk

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _refuse(self, request_id: str, reasons: list[Reason], detail: str = "", signal_id: str = "") -> Verdict:
        for r in reasons:
            self.count(r)
        return Verdict(_reject(request_id, reasons, detail, signal_id))

    def admit(self, frame: bytes, now_ns: int) -> Verdict:
        if len(frame) > self._max_frame:
            return self._refuse("", [Reason.FRAME_TOO_LARGE], "frame of " + str(len(frame)) + " bytes")
        try:
            req = intake_request_decoder.decode(frame)
        except msgspec.ValidationError as exc:
            return self._refuse("", [Reason.MALFORMED_FRAME], "envelope: " + str(exc))
        except msgspec.DecodeError:
            return self._refuse("", [Reason.MALFORMED_FRAME], "not a msgpack envelope")
        if type(req) is Discover:
            return _DISCOVER
        return self.admit_envelope(req, now_ns)

    def admit_envelope(self, env: SignedSignal, now_ns: int) -> Verdict:
        verdict = self._judge(env, now_ns)
        reply = verdict.reply
        if reply is not None and reply.ts_ns != env.ts_ns:
            verdict.reply = msgspec.structs.replace(reply, ts_ns=env.ts_ns)
        return verdict

    def _judge(self, env: SignedSignal, now_ns: int) -> Verdict:
        bad = self._verifier.verify(env, now_ns)
        if bad is not None:
            return self._refuse(_request_id_of(env.payload, env.fmt), [bad])
        try:  # the signature was over these exact bytes, whichever their format
            sig = (signal_json_decoder if env.fmt == "json" else signal_decoder).decode(env.payload)
        except msgspec.ValidationError as exc:
            return self._refuse(_request_id_of(env.payload, env.fmt), [schema_reason(exc)], str(exc))
        except msgspec.DecodeError:
            return self._refuse("", [Reason.MALFORMED_FRAME], "payload is not " + env.fmt)
        rid = sig.request_id
        rules = order_rule_violations(sig)
        if rules:
            return self._refuse(rid, rules)
        if self._route is not None and self._route(sig.strategy_id, sig.symbol) is None:
            return self._refuse(rid, [Reason.NO_ROUTE], "no route for strategy " + repr(sig.strategy_id)
                                + " on " + repr(sig.symbol))
        digest = payload_digest(env.payload)
        known, previous = self._memory.lookup(rid, digest)
        if known:
            if previous is None:
                return self._refuse(rid, [Reason.REPLAY], "request_id reused with other content")
            self.count("retry")
            return Verdict(msgspec.structs.replace(previous, duplicate=True))
        now_s = now_ns / 1e9
        ts = sig.timestamp_s()
        if self._memory.stale(ts, now_s):
            return self._refuse(rid, [Reason.STALE_TIMESTAMP], "signal timestamp outside the dedupe window")
        signal_id = signal_id_for(rid)
        failed = self._risk.check(sig, now_ns)
        if failed:
            verdict = self._refuse(rid, failed, signal_id=signal_id)
            self._memory.remember(rid, digest, ts, verdict.reply)  # a retry gets the same refusal
            return verdict
        # reserve at once, so the next signal of the same batch sees this one (throttles, exposure)
        self._risk.commit(sig, now_ns)
        reply = Reply(status=Status.ACCEPTED, request_id=rid, signal_id=signal_id)
        self._memory.remember(rid, digest, ts, reply)
        return Verdict(reply, sig)

    def remember_accepted(self, request_id: str, signal_id: str, signal_ts_s: float) -> None:
        """Rebuild memory from the signal log after a restart (the payload digest is unknown)."""
        reply = Reply(status=Status.ACCEPTED, request_id=request_id, signal_id=signal_id)
        self._memory.remember(request_id, UNKNOWN_DIGEST, signal_ts_s, reply)

    def cover_from(self, signal_ts_s: float) -> None:
        """The memory was rebuilt only from this time on: older signals are refused as stale."""
        self._memory.raise_watermark(signal_ts_s)

    def forget(self, signal: Signal, now_ns: int) -> None:
        """Undo an acceptance that could not be made durable, so the client may retry."""
        self._memory.forget(signal.request_id)
        self._risk.release(signal, now_ns)

    def expire(self, now_ns: int) -> int:
        return self._memory.expire(now_ns / 1e9)
