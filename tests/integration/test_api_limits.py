"""The HTTP intake under hostile clients (issue 10 item 9), over a real uvicorn server and sockets:
slowloris connections are closed, a flooding address is refused with 429 before any work, and
the node keeps answering everyone else."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from actors.api import ApiServer, build_app
from node.config import ApiConfig

UP = {"validator": {"accepted": 1}, "broker": {}, "engine:a": {"role": "leader"}}


@pytest.fixture
def server(request):
    cfg = ApiConfig(port=0, admin_token="tok", **getattr(request, "param", {}))
    srv = ApiServer(build_app(cfg, lambda timeout_s: UP, lambda action, body: {}), "127.0.0.1", 0, cfg)
    url = srv.start()
    yield url
    srv.stop()


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def closed_within(sock: socket.socket, timeout_s: float) -> bool:
    """True when the server closes the connection (EOF or reset) before `timeout_s`."""
    sock.settimeout(timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


SLOW = {"header_timeout_ms": 300, "body_timeout_ms": 300}


@pytest.mark.parametrize("server", [SLOW], indirect=True)
@pytest.mark.parametrize("sent", [
    b"",  # connects and says nothing
    b"POST /v1/signals HTTP/1.1\r\nHost: x\r\nX-Key-Id: k\r\n",  # headers never finished
    b"POST /v1/signals HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":",  # body never finished
])
def test_slow_connections_are_closed(server, sent):
    with socket.create_connection(address(server)) as sock:
        if sent:
            sock.sendall(sent)
        assert closed_within(sock, 5.0)
    assert httpx.get(server + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize("server", [SLOW], indirect=True)
def test_a_keep_alive_connection_serves_requests_past_the_header_deadline(server):
    with httpx.Client(timeout=5) as c:
        for _ in range(3):
            assert c.get(server + "/health").status_code == 200
            time.sleep(0.4)  # longer than the header deadline, shorter than uvicorn's keep-alive


@pytest.mark.parametrize("server", [{"peer_rate_per_sec": 0.001, "peer_burst": 5.0}], indirect=True)  # no refill during the test
def test_a_flooding_address_gets_429_rate_limited(server):
    with httpx.Client(timeout=5) as c:
        codes = [c.post(server + "/v1/signals", content=b"{}").status_code for _ in range(20)]
        assert codes[:5] == [400] * 5  # no headers: refused by the endpoint
        assert set(codes[5:]) == {429}
        assert c.get(server + "/health").status_code == 200  # the intake's flood leaves the rest alone
        codes = [c.get(server + "/metrics").status_code for _ in range(20)]
        assert set(codes[5:]) == {429} and 200 in codes
        r = c.get(server + "/metrics")
        assert r.status_code == 429 and r.json()["reasons"] == ["RATE_LIMITED"]
