"""The Schwab fake's streamer: a websocket server speaking Schwab's streamer protocol, for tests.

What schwab-py's `StreamClient` sends and reads, as Schwab documents it:

- Requests are `{"requests": [{service, command, requestid, SchwabClientCustomerId,
  SchwabClientCorrelId, parameters}]}`; each is answered `{"response": [{service, command,
  requestid, SchwabClientCorrelId, timestamp, content: {code, msg}}]}` (code 0: done).
- `ADMIN LOGIN` needs a live access token of the fake (`parameters.Authorization`) and the
  customer id the user preferences named; else code 3 and the socket is closed.
- `ACCT_ACTIVITY SUBS` (keys = the correl id) subscribes the session to the account's events; a
  `SUBSCRIBED` entry follows. Each order event of the fake (`publish`: OrderCreated, OrderAccepted,
  ExecutionCreated, OrderFillCompleted, OrderUROutCompleted, ChangeAccepted) is one data frame,
  `{"data": [{service, timestamp, command, content: [{seq, key, "1": account, "2": type,
  "3": MESSAGE_DATA as a JSON string with SchwabOrderID and BaseEvent}]}]}`.
- `{"notify": [{"heartbeat": ms}]}` every `heartbeat_s`.

Faults: `drop_next(n)` (the next n event frames are lost), `kill()` (every connection cut with no
close frame), `refuse = True` (new connections cut at once: the streamer is down), `send_raw(frame)`
(a frame as given, to every subscribed session: hostile input).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


def _ms() -> int:
    return int(time.time() * 1000)


class SchwabStreamer:
    def __init__(self, authorized: Callable[[str], bool], account_number: str, customer_id: str,
                 correl_id: str) -> None:
        self._authorized = authorized
        self.account_number = account_number
        self.customer_id = customer_id
        self.correl_id = correl_id
        self.heartbeat_s = 5.0
        self.refuse = False
        self.url = ""
        self.sent = 0  # event frames sent (to all sessions)
        self.dropped = 0
        self.logins = 0
        self._drop = 0
        self._seq = 0
        self._subscribed: set[ServerConnection] = set()
        self._connections: set[ServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- controls (any thread)

    def start(self) -> "SchwabStreamer":
        ready = threading.Event()

        def run() -> None:
            asyncio.run(self._serve(ready))

        self._thread = threading.Thread(target=run, name="schwab-fake-streamer", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        if self._thread is not None:
            self._thread.join(5)

    def publish(self, order_id: int, event_type: str, detail: dict | None = None) -> None:
        """One account-activity event of order `order_id`, to every subscribed session."""
        body = {"SchwabOrderID": str(order_id), "AccountNumber": self.account_number,
                "BaseEvent": {"EventType": event_type, **(detail or {})}}
        self._call(self._event, event_type, json.dumps(body))

    def drop_next(self, n: int = 1) -> None:
        self._call(self._add_drop, n)

    def kill(self) -> None:
        self._call(self._kill)

    def send_raw(self, frame: str | bytes) -> None:
        self._call(self._raw, frame)

    def subscribed(self) -> int:
        return len(self._subscribed)

    def _call(self, fn: Callable, *args: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn, *args)

    # ---------------------------------------------------------------- the server's loop

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._session, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = "ws://127.0.0.1:" + str(port) + "/ws"
            ready.set()
            beat = asyncio.create_task(self._heartbeats())
            await self._stop
            beat.cancel()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            frame = json.dumps({"notify": [{"heartbeat": str(_ms())}]})
            for ws in list(self._subscribed):
                self._send(ws, frame)

    async def _session(self, ws: ServerConnection) -> None:
        if self.refuse:
            ws.transport.abort()
            return
        self._connections.add(ws)
        logged_in = False
        try:
            async for raw in ws:
                try:
                    requests = json.loads(raw)["requests"]
                except (ValueError, KeyError, TypeError):
                    continue
                for r in requests:
                    service, command = r.get("service"), r.get("command")
                    if service == "ADMIN" and command == "LOGIN":
                        p = r.get("parameters") or {}
                        ok = (self._authorized(str(p.get("Authorization", "")))
                              and r.get("SchwabClientCustomerId") == self.customer_id)
                        await ws.send(self._response(r, 0 if ok else 3, "server=fake;status=PN" if ok else "Login denied"))
                        if not ok:
                            await ws.close()
                            return
                        logged_in = True
                        self.logins += 1
                    elif not logged_in:
                        await ws.send(self._response(r, 3, "not logged in"))
                    elif service == "ACCT_ACTIVITY" and command == "SUBS":
                        keys = str((r.get("parameters") or {}).get("keys", ""))
                        if keys != self.correl_id:
                            await ws.send(self._response(r, 11, "unknown key"))
                            continue
                        await ws.send(self._response(r, 0, "SUBS command succeeded"))
                        self._subscribed.add(ws)
                        self._seq += 1
                        await ws.send(self._data("SUBSCRIBED", ""))
                    elif service == "ADMIN" and command == "LOGOUT":
                        await ws.send(self._response(r, 0, "SUCCESS"))
                        await ws.close()
                        return
                    else:
                        await ws.send(self._response(r, 22, "command not supported by the fake"))
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)
            self._subscribed.discard(ws)

    def _response(self, r: dict, code: int, msg: str) -> str:
        return json.dumps({"response": [{
            "service": r.get("service"), "command": r.get("command"), "requestid": str(r.get("requestid")),
            "SchwabClientCorrelId": self.correl_id, "timestamp": _ms(), "content": {"code": code, "msg": msg},
        }]})  # fmt: skip

    def _data(self, event_type: str, message: str) -> str:
        return json.dumps({"data": [{
            "service": "ACCT_ACTIVITY", "timestamp": _ms(), "command": "SUBS",
            "content": [{"seq": self._seq, "key": self.correl_id, "1": self.account_number, "2": event_type,
                         "3": message}],
        }]})  # fmt: skip

    def _event(self, event_type: str, message: str) -> None:
        self._seq += 1
        if self._drop > 0:
            self._drop -= 1
            self.dropped += 1
            return
        frame = self._data(event_type, message)
        for ws in list(self._subscribed):
            self.sent += 1
            self._send(ws, frame)

    def _send(self, ws: ServerConnection, frame: str | bytes) -> None:
        async def send() -> None:
            try:
                await ws.send(frame)
            except ConnectionClosed:
                pass

        asyncio.ensure_future(send())

    def _add_drop(self, n: int) -> None:
        self._drop += n

    def _kill(self) -> None:
        for ws in list(self._connections):
            ws.transport.abort()
        self._subscribed.clear()

    def _raw(self, frame: str | bytes) -> None:
        for ws in list(self._subscribed):
            self._send(ws, frame)
