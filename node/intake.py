"""The signal gate: one frame in, a verdict out (pure logic, no I/O).

Order of checks, cheapest and most fundamental first: frame size, envelope decode, signature and
timestamp, payload schema, size and price rules, staleness and dedupe, then pre-trade risk.
Every refusal is a `Reply` with precise reason codes; nothing raises past `admit`.

The gate remembers its verdicts per request_id (see `DedupeMemory`), so a retry of a signal gets
the answer it got the first time and never a second order. It keeps each verdict as its msgpack
bytes: an entry (digest, time, bytes) holds nothing the cyclic garbage collector tracks, so the
memory of the dedupe window (600k entries at 1,000 signals/s) adds nothing to a collection's walk
(node.gcwatch); a retry, the rare case, decodes it again.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Protocol

import msgspec

from node.config import IntakeConfig, SigningConfig
from node.messages import (
    AmendKind,
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
from node.ratelimit import TokenBuckets
from node.reasons import Reason
from node.signing import UNKNOWN_DIGEST, DedupeMemory, Verifier, payload_digest

#: NUL and every other C0 / C1 control character (PostgreSQL refuses NUL in text; none belongs in an id)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ID_FIELDS = ("request_id", "strategy_id", "model_id", "correlation_group")
_SIGNAL_ENCODE = msgspec.msgpack.Encoder().encode
_remembered = msgspec.msgpack.Encoder().encode  # a verdict as the memory keeps it (bytes: untracked)
_recalled = msgspec.msgpack.Decoder(Reply).decode

_NEEDS_LIMIT = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_NEEDS_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


class RiskCheck(Protocol):
    """What the gate needs of pre-trade risk (`node.risk.PreTradeRisk` is the real one)."""

    def check(self, signal: Signal, now_ns: int) -> list[Reason]: ...
    def commit(self, signal: Signal, now_ns: int) -> None: ...
    def check_commit(self, signal: Signal, now_ns: int) -> list[Reason]: ...
    def release(self, signal: Signal, now_ns: int) -> None: ...
    def last_price(self, symbol: str) -> float: ...


class NoRisk:
    def check(self, signal: Signal, now_ns: int) -> list[Reason]:
        return []

    def commit(self, signal: Signal, now_ns: int) -> None:
        pass

    def check_commit(self, signal: Signal, now_ns: int) -> list[Reason]:
        return []

    def release(self, signal: Signal, now_ns: int) -> None:
        pass

    def last_price(self, symbol: str) -> float:
        return 0.0


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
    except (msgspec.DecodeError, RecursionError, ValueError, MemoryError):
        return ""
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid[:128] if isinstance(rid, str) and not _CONTROL.search(rid) else ""


def id_violations(sig: Signal) -> list[str]:
    """The id and text fields that hold a control character (NUL included)."""
    if not _CONTROL.search(sig.request_id + sig.strategy_id + (sig.model_id or "") + (sig.correlation_group or "")):
        return []  # one search of the ids together; only a hit names the fields
    return [name for name in _ID_FIELDS if (v := getattr(sig, name)) is not None and _CONTROL.search(v)]


def timestamp_of(sig: Signal) -> float:
    """The signal's own time in seconds since the epoch; NaN when it is no representable instant
    (a naive datetime is read as UTC, never as the node's local time)."""
    try:
        return sig.timestamp_s()
    except (ValueError, OverflowError, OSError):
        return math.nan


def content_digest(sig: Signal) -> bytes:
    """What makes two attempts of one request_id the same request: every field but `timestamp`,
    in one canonical encoding (a JSON retry of a msgpack signal, or a client that stamps each
    attempt anew, is a retry, never a REPLAY)."""
    return payload_digest(_SIGNAL_ENCODE(msgspec.structs.replace(sig, timestamp=0.0)))


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


def _patterns(items: list[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact ids, prefixes) of a list of strategy ids where `prefix*` matches a prefix."""
    return (frozenset(i for i in items if not i.endswith("*")), tuple(i[:-1] for i in items if i.endswith("*")))


def _matches(patterns: tuple[frozenset[str], tuple[str, ...]], strategy_id: str) -> bool:
    return strategy_id in patterns[0] or strategy_id.startswith(patterns[1])


class SignalGate:
    """Authenticates, decodes and checks signals; remembers verdicts for idempotent retries.

    `admit` is total: whatever the frame, it returns a verdict with a reason code (a frame nested
    too deep is MALFORMED_FRAME, anything unforeseen INTERNAL, counted under "internal_errors"),
    and a refused or failed judgement leaves nothing reserved and nothing remembered.
    """

    def __init__(
        self,
        signing: SigningConfig,
        intake: IntakeConfig,
        risk: RiskCheck | None = None,
        clock_ns: Callable[[], int] | None = None,
        route: Callable[[str, str], str | None] | None = None,
        amendable: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._verifier = Verifier(signing.keys, signing.timestamp_window_ms)
        self._memory: DedupeMemory[bytes] = DedupeMemory(signing.dedupe_window_secs, signing.dedupe_max_entries)
        self._future_s = signing.timestamp_window_ms / 1000.0
        self._max_frame = intake.max_frame_bytes
        self._risk = risk or NoRisk()
        self._route = route  # (strategy_id, symbol) -> engine group, None: refused (NO_ROUTE)
        self._amendable = amendable  # (strategy_id, symbol) -> its group's engine replaces (every engine cancels)
        self._key_strategies = {k: _patterns(v) for k, v in signing.key_strategies.items()}
        self._strategy_allow = _patterns(intake.strategies) if intake.strategies else None
        self._max_strategies = intake.max_strategies
        self._max_symbols = intake.max_symbols
        self._strategies: set[str] = set()  # strategies let through to risk (bounded)
        self._symbols: set[str] = set()  # symbols let through to risk (bounded)
        self._groups: set[str] = set()  # correlation groups let through to risk (bounded)
        self._max_groups = intake.max_correlation_groups
        self._min_qty = intake.min_order_quantity
        self._key_buckets = TokenBuckets(intake.key_rate_per_sec, intake.key_burst, max(16, len(signing.keys)))
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

    def admit(self, frame: bytes, now_ns: int, expired: str = "") -> Verdict:
        """`expired` (a fallback entry taken past the maximum age its client gave, with the detail to
        say so): a new request is refused STALE_TIMESTAMP before risk sees it, and that refusal is
        remembered like any other, so no later copy of the request (a frame the client's socket still
        held, a retry) can execute what the client was told was refused."""
        try:
            if len(frame) > self._max_frame:
                return self._refuse("", [Reason.FRAME_TOO_LARGE], "frame of " + str(len(frame)) + " bytes")
            try:
                req = intake_request_decoder.decode(frame)
            except msgspec.ValidationError as exc:
                return self._refuse("", [Reason.MALFORMED_FRAME], "envelope: " + str(exc)[:200])
            except msgspec.DecodeError:
                return self._refuse("", [Reason.MALFORMED_FRAME], "not a msgpack envelope")
            if type(req) is Discover:
                return _DISCOVER
            return self.admit_envelope(req, now_ns, expired)
        except RecursionError:
            return self._refuse("", [Reason.MALFORMED_FRAME], "nested too deep")
        except Exception as exc:  # noqa: BLE001 - the gate is total: a reply, never a stopped wake-up
            self.count("internal_errors")
            return self._refuse("", [Reason.INTERNAL], "the gate could not judge this frame: " + type(exc).__name__)

    def admit_envelope(self, env: SignedSignal, now_ns: int, expired: str = "") -> Verdict:
        verdict = self._judge(env, now_ns, expired)
        reply = verdict.reply
        if reply is not None and reply.ts_ns != env.ts_ns:
            verdict.reply = msgspec.structs.replace(reply, ts_ns=env.ts_ns)
        return verdict

    def _judge(self, env: SignedSignal, now_ns: int, expired: str) -> Verdict:
        bad = self._verifier.verify(env, now_ns)
        if bad is not None:
            return self._refuse(_request_id_of(env.payload, env.fmt), [bad])
        if not self._key_buckets.take(env.key_id, now_ns):
            return self._refuse(_request_id_of(env.payload, env.fmt), [Reason.RATE_LIMITED],
                                "this key is over its rate (intake.key_rate_per_sec); retry later")
        try:  # the signature was over these exact bytes, whichever their format
            sig = (signal_json_decoder if env.fmt == "json" else signal_decoder).decode(env.payload)
        except msgspec.ValidationError as exc:
            return self._refuse(_request_id_of(env.payload, env.fmt), [schema_reason(exc)], str(exc)[:300])
        except msgspec.DecodeError:
            return self._refuse("", [Reason.MALFORMED_FRAME], "payload is not " + env.fmt)
        bad_ids = id_violations(sig)
        if bad_ids:
            rid = "" if "request_id" in bad_ids else sig.request_id
            return self._refuse(rid, [Reason.INVALID_ID], "control character in " + ", ".join(bad_ids))
        rid = sig.request_id
        rules = order_rule_violations(sig)
        if rules:
            return self._refuse(rid, rules)
        amend = sig.amend
        if amend is not None:
            if amend.original_request_id == rid:
                return self._refuse(rid, [Reason.AMEND_INVALID], "a signal cannot amend itself")
            if (amend.kind is AmendKind.REPLACE and self._amendable is not None
                    and not self._amendable(sig.strategy_id, sig.symbol)):
                return self._refuse(rid, [Reason.AMEND_UNSUPPORTED], "the engine of this signal's group cannot "
                                    "replace an order (it can cancel one)")
        refused = self._universe(env.key_id, sig)
        if refused is not None:
            return refused
        if self._route is not None and self._route(sig.strategy_id, sig.symbol) is None:
            return self._refuse(rid, [Reason.NO_ROUTE], "no route for strategy " + repr(sig.strategy_id)
                                + " on " + repr(sig.symbol))
        digest = content_digest(sig)
        known, previous = self._memory.lookup(rid, digest)
        if known:
            if previous is None:
                return self._refuse(rid, [Reason.REPLAY], "request_id reused with other content")
            self.count("retry")
            return Verdict(msgspec.structs.replace(_recalled(previous), duplicate=True))
        ts = timestamp_of(sig)
        if expired:
            verdict = self._refuse(rid, [Reason.STALE_TIMESTAMP], expired, signal_id_for(rid))
            # remembered no later than now: a future stamp must not move the watermark when it is dropped
            self._memory.remember(rid, digest, min(ts, now_ns / 1e9) if math.isfinite(ts) else now_ns / 1e9,
                                  _remembered(verdict.reply))
            return verdict
        now_s = now_ns / 1e9
        if not math.isfinite(ts):
            return self._refuse(rid, [Reason.TIMESTAMP_INVALID], "timestamp is not a representable instant")
        if ts > now_s + self._future_s:
            return self._refuse(rid, [Reason.FUTURE_TIMESTAMP], "timestamp ahead of the node's clock by more than "
                                "signing.timestamp_window_ms")
        if self._memory.stale(ts, now_s):
            return self._refuse(rid, [Reason.STALE_TIMESTAMP], "signal timestamp outside the dedupe window")
        if amend is not None and amend.kind is AmendKind.CANCEL:
            # a cancel takes no risk: it passes the kill switch, a halt and an UNKNOWN symbol alike
            reply = Reply(status=Status.ACCEPTED, request_id=rid, signal_id=signal_id_for(rid), ts_ns=env.ts_ns)
            self._memory.remember(rid, digest, ts, _remembered(reply))
            self.count("cancels")
            return Verdict(reply, sig)
        if self._rounds_to_zero(sig):
            return self._refuse(rid, [Reason.ZERO_QUANTITY], "the order is below intake.min_order_quantity shares")
        signal_id = signal_id_for(rid)
        # checked and, if it passes, reserved at once (one kernel call), so the next signal of the same
        # batch sees this one (throttles, exposure)
        try:
            failed = self._risk.check_commit(sig, now_ns)
            if not failed:
                # stamped as the envelope: admit_envelope then copies no reply (a retry's copy is restamped)
                reply = Reply(status=Status.ACCEPTED, request_id=rid, signal_id=signal_id, ts_ns=env.ts_ns)
                self._memory.remember(rid, digest, ts, _remembered(reply))
        except BaseException:
            self._memory.forget(rid)
            self._risk.release(sig, now_ns)  # nothing reserved: a no-op
            raise
        if failed:
            verdict = self._refuse(rid, failed, signal_id=signal_id)
            self._memory.remember(rid, digest, ts, _remembered(verdict.reply))  # a retry gets the same refusal
            return verdict
        return Verdict(reply, sig)

    def _universe(self, key_id: str, sig: Signal) -> Verdict | None:
        """Key -> strategy binding, the strategy allow-list, and the bounds on new strategies and
        symbols (each one that reaches risk takes a slot there, so their number is capped)."""
        strategy = sig.strategy_id
        if self._key_strategies:
            allowed = self._key_strategies.get(key_id)
            if allowed is None or not _matches(allowed, strategy):
                return self._refuse(sig.request_id, [Reason.KEY_NOT_ALLOWED],
                                    "key " + repr(key_id) + " may not trade strategy " + repr(strategy))
        if strategy not in self._strategies:
            if self._strategy_allow is not None and not _matches(self._strategy_allow, strategy):
                return self._refuse(sig.request_id, [Reason.UNKNOWN_STRATEGY], "strategy not in intake.strategies")
            if len(self._strategies) >= self._max_strategies:
                return self._refuse(sig.request_id, [Reason.UNKNOWN_STRATEGY], "intake.max_strategies reached")
            self._strategies.add(strategy)
        if sig.symbol not in self._symbols:
            if len(self._symbols) >= self._max_symbols:
                return self._refuse(sig.request_id, [Reason.UNKNOWN_SYMBOL], "intake.max_symbols reached")
            self._symbols.add(sig.symbol)
        group = sig.correlation_group
        if group is not None and group not in self._groups:
            if len(self._groups) >= self._max_groups:
                return self._refuse(sig.request_id, [Reason.SCHEMA_INVALID], "intake.max_correlation_groups reached")
            self._groups.add(group)
        return None

    def _rounds_to_zero(self, sig: Signal) -> bool:
        qty = sig.quantity
        if qty is None:
            px = sig.limit_price or sig.stop_price or self._risk.last_price(sig.symbol)
            if not px or not px > 0.0:
                return False  # no price to size it at: risk answers NO_PRICE
            qty = sig.notional / (px * self._risk.multiplier(sig.symbol))  # prices per share, units per contract
        return qty < self._min_qty

    def remember_accepted(self, request_id: str, signal_id: str, signal_ts_s: float) -> None:
        """Rebuild memory from the signal log after a restart (the payload digest is unknown)."""
        reply = Reply(status=Status.ACCEPTED, request_id=request_id, signal_id=signal_id)
        self._memory.remember(request_id, UNKNOWN_DIGEST, signal_ts_s, _remembered(reply))

    def cover_from(self, signal_ts_s: float) -> None:
        """The memory was rebuilt only from this time on: older signals are refused as stale."""
        self._memory.raise_watermark(signal_ts_s)

    def forget(self, signal: Signal, now_ns: int) -> None:
        """Undo an acceptance that could not be made durable, so the client may retry."""
        self._memory.forget(signal.request_id)
        self._risk.release(signal, now_ns)

    def reanswer(self, request_id: str, reply: Reply) -> None:
        """A retry of `request_id` gets `reply` from now on (an append in doubt, then settled)."""
        self._memory.replace_outcome(request_id, _remembered(reply))

    def expire(self, now_ns: int) -> int:
        return self._memory.expire(now_ns / 1e9)
