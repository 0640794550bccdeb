"""The validator's durable risk state in Redis: the control stream and the two snapshots.

- `execution.controls` (StorageConfig.controls_stream), field b"c": one `ControlEvent` per control,
  never trimmed by the node (controls are rare; the ledger copies them to PostgreSQL).
- `<node_id>.risk.controls`: a `ControlSnapshot` (the fold up to a stream id), rewritten after each
  control, so a restart reads one key and the few entries after it.
- `<node_id>.risk.snapshot`: a `RiskSnapshot` (positions, cash, marks, pending, UNKNOWN symbols),
  rewritten by the validator about once a second while its risk changes; a restart replays the
  signals and events logged after its marks.

Every read and write raises `StoreError`; the validator decides what a failure means (see there).
"""

from __future__ import annotations

from typing import Iterator

import msgspec
import redis

from node.errors import StoreError
from node.risk import controls as ctl
from node.risk import snapshot as snap
from node.streams import StreamLog

_PAGE = 2_000  # stream entries per XRANGE


class RiskStateStore:
    """Reads and writes the control stream and the snapshots over one Redis client."""

    def __init__(self, client: redis.Redis, node_id: str, controls_stream: str) -> None:
        self._client = client
        self._controls = StreamLog(client, controls_stream, ctl.CONTROLS_FIELD, 1 << 62)
        self._node_id = node_id
        self._controls_key = node_id + ".risk.controls"
        self._snapshot_key = node_id + ".risk.snapshot"

    # ------------------------------------------------------------ controls

    def load_controls(self) -> ctl.ControlSnapshot:
        """The fold of every control recorded: the saved snapshot plus the stream after it. An
        entry that does not decode is skipped (the ledger dead-letters it)."""
        raw = self._get(self._controls_key)
        state = ctl.ControlSnapshot()
        if raw:
            try:
                state = ctl.decode_snapshot(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                state = ctl.ControlSnapshot()  # unreadable: fold the whole stream again
        for entry_id, fields in self.entries_after(self._controls.stream, state.last_id):
            state.last_id = entry_id.decode()
            value = fields.get(ctl.CONTROLS_FIELD)
            if value is None:
                continue
            try:
                event = ctl.decode_event(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if event.node_id == self._node_id:
                state.state.fold(event.control)
        return state

    def record_control(self, event: ctl.ControlEvent, fold: ctl.ControlSnapshot) -> str:
        """Append one control, then save the fold as of its entry id; returns the id."""
        entry_id = self._controls.append_packed(ctl.encode_event(event)).decode()
        fold.last_id = entry_id
        self._set(self._controls_key, ctl.encode_snapshot(fold))
        return entry_id

    # ------------------------------------------------------------ risk snapshot

    def load_snapshot(self) -> snap.RiskSnapshot | None:
        raw = self._get(self._snapshot_key)
        if not raw:
            return None
        try:
            return snap.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    def save_snapshot(self, state: snap.RiskSnapshot) -> None:
        self._set(self._snapshot_key, snap.encode(state))

    def tip(self, stream: str) -> str:
        """The newest entry id of `stream` ("0" when empty)."""
        try:
            got = self._client.xrevrange(stream, max="+", min="-", count=1)
        except redis.RedisError as exc:
            raise StoreError("redis read of " + stream + " failed: " + type(exc).__name__) from exc
        return got[0][0].decode() if got else "0"

    def entries_after(self, stream: str, after: str, limit: int = 10_000_000) -> Iterator[tuple[bytes, dict]]:
        """Entries of `stream` strictly after id `after`, oldest first, page by page."""
        cursor = "-" if after in ("", "0") else "(" + after
        seen = 0
        while seen < limit:
            try:
                page = self._client.xrange(stream, min=cursor, max="+", count=_PAGE)
            except redis.RedisError as exc:
                raise StoreError("redis read of " + stream + " failed: " + type(exc).__name__) from exc
            if not page:
                return
            for entry in page:
                yield entry
            seen += len(page)
            cursor = "(" + page[-1][0].decode()
            if len(page) < _PAGE:
                return

    def _get(self, key: str) -> bytes | None:
        try:
            return self._client.get(key)
        except redis.RedisError as exc:
            raise StoreError("redis GET " + key + " failed: " + type(exc).__name__) from exc

    def _set(self, key: str, value: bytes) -> None:
        try:
            self._client.set(key, value)
        except redis.RedisError as exc:
            raise StoreError("redis SET " + key + " failed: " + type(exc).__name__) from exc
