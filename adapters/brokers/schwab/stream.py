"""Schwab's streamer, account activity: schwab-py's own `StreamClient` on a thread of its own.

- The streamer's URL and ids come from the user preferences and the LOGIN carries the access token:
  both are asked of the venue's worker (`ask`, answered between two commands), so the HTTP session
  and its token refresh stay in one thread.
- `ACCT_ACTIVITY` is subscribed; every event that names a Schwab orderId is a wake-up handed to the
  worker (`wake`), which reads that order at once. The event's own quantities are not booked: the
  order read is, so a fill seen on the stream and on a sweep is one exec id, reported once.
- A (re)connect asks the worker for a sweep at once (`resync`): what happened while the stream was
  down is found by the sweep, which keeps running as the backstop whatever the stream does.
- A stream that closes, fails to connect, or is silent (no data, no heartbeat) for
  `stream_idle_timeout_ms` is reconnected after a backoff (`stream_reconnect_min_ms` doubling to
  `stream_reconnect_max_ms`). A frame that cannot be read (not JSON, not Schwab's shape, an entry
  naming no order) is a counted drop (`dropped` frames, `unreadable` entries), logged at most once a
  minute: never a crash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from typing import Any, Callable

import httpx
from schwab.streaming import StreamClient, StreamJsonDecoder
from websockets.exceptions import ConnectionClosed

from adapters.brokers.schwab import parsing
from adapters.brokers.schwab.config import SchwabConfig

log = logging.getLogger("nae.broker.schwab.stream")

_LOG_EVERY_S = 60.0


class _Login:
    """What `StreamClient.login` asks of an HTTP client: the preferences, and the token metadata."""

    def __init__(self, preferences: Any, access_token: str) -> None:
        self._preferences = preferences
        self.token_metadata = self
        self.token = {"access_token": access_token}

    def get_user_preferences(self) -> httpx.Response:
        return httpx.Response(200, json=self._preferences)


_FRAME_KINDS = ("data", "notify", "response")


def _is_frame(obj: Any) -> bool:
    """One of the streamer's frame shapes: an object with lists of objects under data / notify /
    response; data entries of the service subscribed, notify entries a heartbeat or a service's."""
    if not isinstance(obj, dict) or not any(isinstance(obj.get(k), list) for k in _FRAME_KINDS):
        return False
    for kind in _FRAME_KINDS:
        entries = obj.get(kind)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return False
        if kind == "data" and any(e.get("service") != "ACCT_ACTIVITY" for e in entries):
            return False
        if kind == "notify" and any("heartbeat" not in e and not isinstance(e.get("service"), str) for e in entries):
            return False
    return True


class _FrameDecoder(StreamJsonDecoder):
    """JSON, and a streamer frame (`_is_frame`); anything else fails as schwab-py's own parse
    failures do (a dropped frame)."""

    def decode_json_string(self, raw: str | bytes) -> Any:
        obj = json.loads(raw)
        if not _is_frame(obj):
            raise json.JSONDecodeError("not a streamer frame", raw if isinstance(raw, str) else "", 0)
        return obj


class ActivityStream:
    def __init__(
        self, cfg: SchwabConfig, ask: Callable[[], concurrent.futures.Future], wake: Callable[[str], None],
        resync: Callable[[], None],
    ) -> None:
        self._cfg = cfg
        self._ask = ask
        self._wake = wake
        self._resync = resync
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._last_log = 0.0
        # counters (written by the stream's thread, read anywhere)
        self.up = False
        self.connects = 0
        self.disconnects = 0
        self.frames = 0
        self.wakeups = 0
        self.dropped = 0  # frames not taken (not JSON, not a streamer frame, a shape schwab-py fails on)
        self.unreadable = 0  # account-activity entries naming no order we can read

    def stats(self) -> dict:
        return {"stream_up": self.up, "stream_connects": self.connects, "stream_disconnects": self.disconnects,
                "stream_frames": self.frames, "stream_wakeups": self.wakeups, "stream_dropped": self.dropped,
                "stream_unreadable": self.unreadable}

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._task = loop.create_task(self._run())
            ready.set()
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="schwab-stream", daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ---------------------------------------------------------------- the stream's thread

    async def _run(self) -> None:
        cfg = self._cfg
        backoff = cfg.stream_reconnect_min_ms / 1000
        while True:
            try:
                await self._session()
                backoff = cfg.stream_reconnect_min_ms / 1000  # it was up: start the backoff over
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the stream's boundary: counted, logged, reconnected
                self._log("schwab stream: down (%s: %s); reconnecting in %.2f s", type(exc).__name__,
                          str(exc)[:200], backoff)
            if self.up:
                self.up = False
                self.disconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, cfg.stream_reconnect_max_ms / 1000)

    async def _session(self) -> None:
        timeout = self._cfg.request_timeout_ms / 1000
        idle = self._cfg.stream_idle_timeout_ms / 1000
        preferences, token = await asyncio.wait_for(asyncio.wrap_future(self._ask()), timeout * 3)
        client = StreamClient(_Login(preferences, token), enforce_enums=False)
        client.json_decoder = _FrameDecoder()
        client.add_account_activity_handler(self._on_activity)
        try:
            await asyncio.wait_for(client.login({"open_timeout": timeout, "ping_interval": None,
                                                 "max_size": 1 << 20}), timeout)
            await asyncio.wait_for(client.account_activity_sub(), timeout)
            self.connects += 1
            self.up = True
            self._resync()  # what happened while it was down: the sweep finds it now
            while True:
                try:
                    await asyncio.wait_for(client.handle_message(), idle)
                except (ConnectionClosed, OSError, asyncio.TimeoutError):
                    raise
                except Exception as exc:  # noqa: BLE001 - a frame schwab-py could not take: dropped
                    self.dropped += 1
                    self._log("schwab stream: frame dropped (%s)", type(exc).__name__)
                else:
                    self.frames += 1
        finally:
            socket = client._socket
            if socket is not None:
                await socket.close()

    def _on_activity(self, data: Any) -> None:
        ids, bad = parsing.activity_order_ids(data)
        if bad:
            self.unreadable += bad
            self._log("schwab stream: %d account activity entries not read", bad)
        for order_id in ids:
            self.wakeups += 1
            self._wake(order_id)

    def _log(self, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.warning(fmt, *args)
