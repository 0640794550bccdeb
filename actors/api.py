"""The operator HTTP API, served from the supervisor's process (uvicorn on its own thread, no Ray here):

- `GET /livez`: 200 while this process serves (no dependency checked);
- `GET /readyz`: 200 when the node may take signals (node.health: data plane up, the signal log
  writable, the ledger within `ready_max_ledger_lag`), else 503 with `not_ready` (the reasons);
- `GET /health`: every component (each actor, `redis`, `postgresql`, `ledger_lag`) with its state;
  200 `"ok"` when all are up and the node is ready, else 503 `"degraded"` (`"down"`: the
  supervisor itself did not answer). `actors` keeps the older `{role: "up"|"down"}` view;
- `GET /openapi.json` and `GET /docs`: the OpenAPI document (node.api_schema: the bodies are the
  msgspec structs the node decodes and encodes);
- `GET /metrics`: Prometheus text built from the actors' own counters at scrape time
  (`node.metrics`: no metric call on the per-signal path);
- `POST /v1/signals`: the seed-compatible intake. The body is a JSON `Signal`; headers `X-Key-Id`,
  `X-Timestamp` (ns) and `X-Signature` (hex HMAC-SHA256 over the 8-byte big-endian timestamp + the
  raw body). The exact body and signature go to the validator in a `SignedSignal(fmt="json")`, so
  the same gate judges them (nothing is verified, decoded or trusted here). Answer: the `Reply`
  as JSON, 200 ACCEPTED, 422 REJECTED, 503 when the intake does not answer in time; 400 / 413
  (same JSON shape, never a traceback) for a missing header or an oversized body;
- `POST /admin/...`: the controls of `execnode admin` / `execnode failover`, with header
  `X-Admin-Token` (403 when no token is configured or it does not match):
  `/admin/kill` and `/admin/unkill` (`{"strategy_id"?}`), `/admin/pause/{strategy_id}`,
  `/admin/resume/{strategy_id}`, `/admin/state` (`{"state", "strategy_id"?}`), `/admin/breaker/reset`
  (`{"name"}`), `/admin/failover` (`{"to"?, "group"?}`), `/admin/failback` (`{"group"?}`),
  `/admin/broker-failover` (`{"group"?, "to"?}`), `/admin/mode` (`{"strategy_id", "mode", "force"?}`:
  paper / shadow / canary / live, node.modes), `/admin/modes`; the older spellings
  `/admin/{pause,resume,reset-breaker}` with a JSON body still work.

Control-plane calls (stats, admin) block on Ray, so they run on a small thread pool, never on the
event loop.

Hostile clients (issue 10): every request first spends a token of its client address's bucket
(`peer_rate_per_sec` / `peer_burst`, one bucket for `/v1/signals` and one for the rest, so an intake
flood never locks the operator out; 429 RATE_LIMITED before any other work); a connection whose
request line and headers (`header_timeout_ms`) or body (`body_timeout_ms`) do not arrive in time is
closed (slowloris); at most `max_connections` connections and requests at once (503 beyond); and
`/metrics` requests that arrive while a scrape runs share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Mapping

import h11
import msgspec
import zmq
import zmq.asyncio
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from node import api_schema
from node.config import ApiConfig
from node.health import AppendWatch, assess
from node.messages import Reply, SignedSignal, Status, encode, intake_response_decoder, to_builtins
from node.metrics import CONTENT_TYPE, exposition, make_registry
from node.ratelimit import TokenBuckets
from node.reasons import Reason

#: stats(timeout_s) -> {role: stats dict}, as `Supervisor.stats`
Stats = Callable[[float], dict[str, Any]]
#: control(action, body) -> result, as `Supervisor._admin`; KeyError / ValueError = the caller's mistake
Control = Callable[[str, dict], Any]

#: roles whose absence stops signals (the ledger may lag without stopping trading)
_DATA_PLANE = ("validator", "broker", "engine:")
_HTTP_STATUS = {Status.ACCEPTED: 200, Status.REJECTED: 422, Status.ERROR: 500}
_SIGNAL_HEADERS = (("x-key-id", "X-Key-Id"), ("x-timestamp", "X-Timestamp"), ("x-signature", "X-Signature"))


# ---------------------------------------------------------------- the intake link


class IntakeLink:
    """One asyncio DEALER to the validator's ROUTER intake, shared by every HTTP request.

    Replies are matched by the envelope's `ts_ns`, which the gate echoes in every `Reply`; among
    requests signed at the same nanosecond (retries of one request), first sent is first served:
    one DEALER's frames are judged and answered in order. The socket is opened on first use, on
    the server's own event loop, and closed there (`close`).
    """

    def __init__(self, endpoint: str, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._sock: zmq.asyncio.Socket | None = None
        self._reader: asyncio.Task | None = None
        self._waiting: dict[int, deque[asyncio.Future]] = {}
        self.timeouts = 0

    def _open(self) -> zmq.asyncio.Socket:
        ctx = zmq.asyncio.Context.shadow(zmq.Context.instance())
        sock = ctx.socket(zmq.DEALER)
        for opt, val in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0)):
            sock.setsockopt(opt, val)
        sock.connect(self.endpoint)
        self._sock = sock
        self._reader = asyncio.get_running_loop().create_task(self._read(sock))
        return sock

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        decode = intake_response_decoder.decode
        while True:
            frame = await sock.recv()
            try:
                msg = decode(frame)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if type(msg) is not Reply:
                continue
            queue = self._waiting.get(msg.ts_ns)
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(msg)
                    break
            if queue is not None and not queue:
                del self._waiting[msg.ts_ns]

    async def send(self, frame: bytes, ts_ns: int) -> Reply:
        """Send one signed frame; its Reply, or `asyncio.TimeoutError` after `timeout_s`."""
        sock = self._sock or self._open()
        fut = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(ts_ns, deque())
        queue.append(fut)
        try:
            await sock.send(frame)
            return await asyncio.wait_for(fut, self.timeout_s)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise
        finally:
            if not fut.done():
                fut.cancel()
            queue = self._waiting.get(ts_ns)
            if queue is not None:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
                if not queue:
                    del self._waiting[ts_ns]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None


# ---------------------------------------------------------------- helpers


def _json(body: Any, status: int) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def _refusal(status: int, reason: Reason, detail: str, counts: dict[str, int]) -> Response:
    """A refusal made here, before the gate: the same JSON shape as the gate's `Reply`."""
    counts[reason] = counts.get(reason, 0) + 1
    return _json(to_builtins(Reply(status=Status.REJECTED, request_id="", reasons=[reason], detail=detail)), status)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` bytes (stops reading at the limit)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():  # ClientDisconnect: the body timeout closed it
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _json_object(request: Request) -> dict:
    """An admin request's body: empty or a JSON object (ValueError otherwise)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise ValueError("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def health_of(stats: Mapping[str, Any]) -> tuple[bool, dict[str, str]]:
    """(all data-plane actors up, {role: "up"|"down"}) from one stats snapshot."""
    actors = {
        role: ("down" if not isinstance(v, Mapping) or "down" in v else "up")
        for role, v in stats.items()
        if role not in ("supervisor", "engine", "api")
    }
    plane = [state for role, state in actors.items() if role.startswith(_DATA_PLANE)]
    return bool(plane) and "validator" in actors and all(s == "up" for s in plane), actors


# ---------------------------------------------------------------- the app


def build_app(
    cfg: ApiConfig,
    stats: Stats,
    control: Control,
    intake_endpoint: str | None = None,
    max_frame_bytes: int = 65_536,
    probe: Any = None,
) -> FastAPI:
    """The FastAPI app. `stats` and `control` are blocking (Ray) calls: they run on a thread pool.
    Without `intake_endpoint`, `POST /v1/signals` answers 503. `probe` (a `node.health.StoreProbe`)
    checks Redis, the ledger's lag and PostgreSQL for /readyz and /health; without it they are
    judged from the actors alone."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="api-control")
    link = IntakeLink(intake_endpoint, cfg.intake_timeout_ms / 1000) if intake_endpoint else None
    stats_timeout_s = cfg.stats_timeout_ms / 1000
    # the API's own counters, scraped with the actors' (refusals made here never reach the gate)
    counts: dict[str, int] = {}
    api_stats: dict[str, Any] = {"forwarded": 0, "intake_timeouts": 0, "reasons": counts}

    def snapshot() -> dict[str, Any]:
        out = dict(stats(stats_timeout_s))
        out["api"] = {**api_stats, "intake_timeouts": link.timeouts if link else 0, "reasons": dict(counts)}
        return out

    registry = make_registry(snapshot)
    peers = TokenBuckets(cfg.peer_rate_per_sec, cfg.peer_burst)
    scraping: list[asyncio.Future | None] = [None]  # the /metrics scrape in progress

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if link is not None:
            await link.close()
        if probe is not None:
            await probe.close()
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="NAE execution node", version=_version(), docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json", lifespan=lifespan,
                  description="Signals in (`POST /v1/signals`, the seed-compatible intake), health, metrics "
                              "and the operator's controls (`/admin/*`, header X-Admin-Token).")

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            base = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = api_schema.openapi(base)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    appends = AppendWatch()

    async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @app.middleware("http")
    async def per_peer_limit(request: Request, call_next: Callable[[Request], Any]) -> Response:
        peer = request.client.host if request.client else ""
        # one bucket for the intake and one for the rest (health, metrics, admin) per address, so a
        # flood of one never starves the other
        lane = "|i" if request.url.path == "/v1/signals" else "|o"
        if not peers.take(peer + lane, time.monotonic_ns()):
            return _refusal(429, Reason.RATE_LIMITED, "too many requests from this address; retry later", counts)
        return await call_next(request)

    async def judged() -> tuple[dict[str, Any] | None, bool, dict[str, Any], list[str], str]:
        """(stats or None, ready, components, why not ready, detail) of the node right now."""
        try:
            snap = await asyncio.wait_for(blocking(stats, stats_timeout_s), stats_timeout_s * 4 + 1)
        except Exception as exc:  # noqa: BLE001 - the supervisor itself did not answer
            return None, False, {}, ["supervisor: no answer (" + type(exc).__name__ + ")"], type(exc).__name__
        stores = await probe.check() if probe is not None else {"redis": {"status": "up", "detail": "not probed"}}
        ready, components, why = assess(snap, stores, appends.failing(snap.get("validator")), cfg.ready_max_ledger_lag)
        return snap, ready, components, why, ""

    @app.get("/livez")
    async def livez() -> Response:
        return _json({"live": True}, 200)

    @app.get("/readyz")
    async def readyz() -> Response:
        _, ready, _, why, _ = await judged()
        return _json({"ready": ready, "not_ready": why}, 200 if ready else 503)

    @app.get("/health")
    async def health() -> Response:
        snap, ready, components, why, detail = await judged()
        if snap is None:
            return _json({"status": "down", "ready": False, "components": {}, "actors": {}, "not_ready": why,
                          "detail": detail}, 503)
        _, actors = health_of(snap)
        ok = ready and all(c.get("status") == "up" for c in components.values())
        return _json({"status": "ok" if ok else "degraded", "ready": ready, "components": components,
                      "actors": actors, "not_ready": why}, 200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        scrape = scraping[0]
        if scrape is None:  # requests that come while a scrape runs share it: a flood costs one at a time
            scrape = scraping[0] = asyncio.ensure_future(blocking(exposition, registry))
            scrape.add_done_callback(lambda _: scraping.__setitem__(0, None))
        return Response(await asyncio.shield(scrape), media_type=CONTENT_TYPE)

    @app.post("/v1/signals")
    async def post_signal(request: Request) -> Response:
        headers = request.headers
        for key, name in _SIGNAL_HEADERS:
            if not headers.get(key):
                return _refusal(400, Reason.SIGNATURE_MISSING, "header " + name + " is required", counts)
        try:
            ts_ns = int(headers["x-timestamp"])
        except ValueError:
            return _refusal(400, Reason.MALFORMED_FRAME, "X-Timestamp must be an integer (ns since the epoch)", counts)
        try:
            sig = bytes.fromhex(headers["x-signature"])
        except ValueError:
            return _refusal(400, Reason.SIGNATURE_INVALID, "X-Signature must be hex", counts)
        if not 0 <= ts_ns < 1 << 64:
            return _refusal(400, Reason.STALE_TIMESTAMP, "X-Timestamp out of range", counts)
        try:
            body = await _read_body(request, cfg.max_body_bytes)
        except ClientDisconnect:  # nobody left to answer; nothing forwarded
            return _refusal(408, Reason.MALFORMED_FRAME, "the body did not arrive in time", counts)
        if body is None:
            return _refusal(413, Reason.FRAME_TOO_LARGE, "body over " + str(cfg.max_body_bytes) + " bytes", counts)
        frame = encode(SignedSignal(key_id=headers["x-key-id"], ts_ns=ts_ns, payload=body, sig=sig, fmt="json"))
        if len(frame) > max_frame_bytes:
            return _refusal(413, Reason.FRAME_TOO_LARGE, "signed frame over " + str(max_frame_bytes) + " bytes", counts)
        if link is None:
            return _json({"status": Status.ERROR, "request_id": "", "reasons": [Reason.NO_ENGINE],
                          "detail": "this API has no intake"}, 503)
        api_stats["forwarded"] += 1
        try:
            reply = await link.send(frame, ts_ns)
        except asyncio.TimeoutError:
            return _json(to_builtins(Reply(
                status=Status.ERROR, request_id="", reasons=[Reason.TIMEOUT], ts_ns=ts_ns,
                detail="no verdict from the intake in time; retry with the same request_id (never a second order)",
            )), 503)
        return _json(to_builtins(reply), _HTTP_STATUS.get(reply.status, 500))

    def forbidden(request: Request) -> Response | None:
        if not cfg.admin_token:
            return _json({"error": "ADMIN_DISABLED", "detail": "admin is off: set [api] admin_token"}, 403)
        given = request.headers.get("x-admin-token", "")
        if not hmac.compare_digest(given.encode(), cfg.admin_token.encode()):
            return _json({"error": "FORBIDDEN", "detail": "header X-Admin-Token missing or wrong"}, 403)
        return None

    async def admin(request: Request, action: str, fixed: dict | None = None) -> Response:
        refused = forbidden(request)
        if refused is not None:
            return refused
        try:
            body = await _json_object(request)
        except ValueError as exc:
            return _json({"error": "BAD_REQUEST", "detail": str(exc)}, 400)
        body.update(fixed or {})
        try:
            result = await blocking(control, action, body)
        except KeyError as exc:
            return _json({"error": "BAD_REQUEST", "detail": "missing " + str(exc)}, 400)
        except ValueError as exc:
            return _json({"error": "BAD_REQUEST", "detail": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001 - an operator gets the reason, never a traceback
            first = (str(exc).splitlines() or [""])[0][:300]
            return _json({"error": "FAILED", "detail": type(exc).__name__ + ": " + first}, 409)
        return _json({"ok": True, "action": action, "result": _plain(result)}, 200)

    @app.post("/admin/pause/{strategy_id}")
    async def admin_pause(strategy_id: str, request: Request) -> Response:
        return await admin(request, "pause", {"strategy_id": strategy_id})

    @app.post("/admin/resume/{strategy_id}")
    async def admin_resume(strategy_id: str, request: Request) -> Response:
        return await admin(request, "resume", {"strategy_id": strategy_id})

    @app.post("/admin/breaker/reset")
    async def admin_breaker_reset(request: Request) -> Response:
        return await admin(request, "reset-breaker")

    def named(action: str) -> Callable[[Request], Any]:
        async def route(request: Request) -> Response:
            return await admin(request, action)

        route.__name__ = "admin_" + action.replace("-", "_")
        return route

    for action in ("kill", "unkill", "state", "mode", "modes", "failover", "failback", "broker-failover"):
        app.post("/admin/" + action)(named(action))

    @app.post("/admin/{action}", include_in_schema=False)  # the older spellings, and unknown actions (400)
    async def admin_action(action: str, request: Request) -> Response:
        return await admin(request, action)

    return app


def _version() -> str:
    from node.metrics import build_info

    return build_info()["version"]


def _plain(value: Any) -> Any:
    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return repr(value)


# ---------------------------------------------------------------- the server


class ApiServer:
    """uvicorn on a daemon thread with its own event loop; `start()` returns the bound address."""

    def __init__(self, app: FastAPI, host: str, port: int, cfg: ApiConfig | None = None) -> None:
        import uvicorn

        cfg = cfg or ApiConfig()
        self._where = host + ":" + str(port)
        self._config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                      lifespan="on", http=guarded_protocol(cfg), limit_concurrency=cfg.max_connections)
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> str:
        """Serve; the address (`http://host:port`) once listening. RuntimeError if it cannot listen."""
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise RuntimeError("api: could not listen on " + self._where + " (port in use?)")
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return "http://%s:%d" % (host, port)

    def _serve(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits when it cannot bind: start() reports it
            pass

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def guarded_protocol(cfg: ApiConfig) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline on each request's headers and on its body: a
    connection that sends (or holds) them slower is closed (slowloris never holds a slot)."""
    header_s = cfg.header_timeout_ms / 1000
    body_s = cfg.body_timeout_ms / 1000

    class GuardedH11Protocol(H11Protocol):
        closed_slow = 0  # connections closed by a deadline (all servers of this config)
        _deadline: asyncio.TimerHandle | None = None
        _phase: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(h11.IDLE, header_s)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _follow(self) -> None:
            """Arm the deadline of the phase the peer is in (headers, body); none once the request is in."""
            state = self.conn.their_state
            if state is h11.IDLE:
                # between requests uvicorn's keep-alive timer runs; a request begun must finish its headers
                if self._phase is not h11.IDLE and (self.conn.trailing_data[0] or self.timeout_keep_alive_task is None):
                    self._arm(h11.IDLE, header_s)
            elif state is h11.SEND_BODY:
                if self._phase is not h11.SEND_BODY:
                    self._arm(h11.SEND_BODY, body_s)
            else:
                self._disarm()

        def _arm(self, phase: object, delay_s: float) -> None:
            self._disarm()
            self._phase = phase
            self._deadline = self.loop.call_later(delay_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._phase = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                type(self).closed_slow += 1
                self.transport.close()

    return GuardedH11Protocol
