"""The operator's HTTP API, served from the supervisor's process (uvicorn on its own thread):

- `GET /health`: 200 `{"status": "ok", "actors": {role: "up"|"down"}}` when every actor answers, else 503;
- `GET /metrics`: Prometheus text built from the actors' own counters at scrape time (no metric
  call on the per-signal path);
- `POST /admin/{kill,unkill,pause,resume,state,reset-breaker,failover,failback}`: the same controls
  as `execnode admin` / `execnode failover`, with header `X-Admin-Token` (403 when no token is
  configured or it does not match).
"""

from __future__ import annotations

import hmac
import threading
from typing import Any, Callable

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse

Stats = Callable[[], dict[str, Any]]
Control = Callable[..., Any]


def metrics_text(stats: dict[str, Any]) -> str:
    """Prometheus exposition of the numeric counters in the actors' stats (`nae_<role>_<name>`)."""
    lines: list[str] = []
    for role, values in sorted(stats.items()):
        if not isinstance(values, dict):
            continue
        label = role.replace('"', "")
        for name, value in sorted(values.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if name == "reasons" and isinstance(value, dict):
                    for reason, count in sorted(value.items()):
                        lines.append('nae_rejections_total{actor="%s",reason="%s"} %s' % (label, reason, count))
                continue
            metric = "nae_" + "".join(c if c.isalnum() else "_" for c in name)
            lines.append('%s{actor="%s"} %s' % (metric, label, value))
    sup = stats.get("supervisor", {})
    if isinstance(sup, dict):
        lines.append("nae_epoch %s" % sup.get("epoch", 0))
        lines.append("nae_failovers_total %s" % len(sup.get("failovers", [])))
        lines.append("nae_restarts_total %s" % len(sup.get("restarts", [])))
    return "\n".join(lines) + "\n"


def build_app(stats: Stats, control: Control, admin_token: str) -> FastAPI:
    app = FastAPI(title="NAE execution node", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> JSONResponse:
        s = stats()
        actors = {role: ("down" if isinstance(v, dict) and "down" in v else "up")
                  for role, v in s.items() if role not in ("supervisor", "engine")}
        ok = all(state == "up" for state in actors.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "actors": actors}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics_text(stats()), media_type="text/plain; version=0.0.4")

    @app.post("/admin/{action}")
    async def admin(action: str, request: Request, x_admin_token: str = Header(default="")) -> JSONResponse:
        if not admin_token or not hmac.compare_digest(x_admin_token.encode(), admin_token.encode()):
            return JSONResponse({"error": "FORBIDDEN", "detail": "set api.admin_token and send X-Admin-Token"},
                                status_code=403)
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "BAD_REQUEST", "detail": "body must be a JSON object"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "BAD_REQUEST", "detail": "body must be a JSON object"}, status_code=400)
        try:
            result = control(action, body)
        except KeyError as exc:
            return JSONResponse({"error": "BAD_REQUEST", "detail": "missing " + str(exc)}, status_code=400)
        except ValueError as exc:
            return JSONResponse({"error": "BAD_REQUEST", "detail": str(exc)}, status_code=400)
        except Exception as exc:  # noqa: BLE001 - an operator gets the reason, never a traceback
            return JSONResponse({"error": "FAILED", "detail": type(exc).__name__ + ": " + str(exc).splitlines()[0][:300]},
                                status_code=409)
        return JSONResponse({"ok": True, "action": action, "result": result})

    return app


class ApiServer:
    """uvicorn on a daemon thread; `start()` returns the bound address."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        import uvicorn

        self._config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                      lifespan="off")
        self._server = uvicorn.Server(self._config)
        self._server.install_signal_handlers = lambda: None  # not the main thread
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> str:
        import time

        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        sock = self._server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return "http://%s:%d" % (host, port)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
