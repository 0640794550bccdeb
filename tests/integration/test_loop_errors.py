"""An exception at an actor's loop boundary (actors/service.py) is counted, kept as the last error,
logged with its traceback once per interval (never a flood, never a secret), and the loop goes on."""

from __future__ import annotations

import io
import time

import zmq

from actors.service import LoopService
from node.config import ApiConfig, NodeConfig, SigningConfig
from node.logs import configure

SECRET = "loop-s3cret-key-abcdef012345"


class Faulty(LoopService):
    name = "faulty"

    def __init__(self) -> None:
        super().__init__()
        self.wakes = 0

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        return {}

    def _poll_timeout_ms(self) -> int:
        return 1

    def _on_wake(self, events: dict) -> None:
        self.wakes += 1
        if self.wakes % 2:
            raise ValueError("bad frame from a peer holding " + SECRET + " via redis://u:" + SECRET + "@h:1/0")


def test_loop_errors_are_logged_once_per_interval_and_kept(tmp_path):
    stream = io.StringIO()
    configure(NodeConfig(data_dir=str(tmp_path), signing=SigningConfig(keys={"k": SECRET}),
                         api=ApiConfig(admin_token="tok-0123456789")), stream=stream)
    svc = Faulty()
    svc.start()
    try:
        deadline = time.monotonic() + 30
        while svc.loop_errors < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        svc.stop()
    assert svc.loop_errors >= 50 and svc.wakes > svc.loop_errors  # it kept turning
    assert svc.last_error.startswith("ValueError: bad frame from a peer holding")
    assert "redis://u:***@h:1/0" in svc.last_error  # stats are shown to operators: URL passwords masked
    text = stream.getvalue()
    assert text.count("loop error") == 1, text  # one per 10 s per exception type
    assert "Traceback (most recent call last)" in text and "_on_wake" in text
    assert SECRET not in text and "***" in text
    assert "nae.faulty" in text and " start" in text and " stop loop_errors=" in text
