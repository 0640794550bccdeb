"""Host side of the Nautilus engine: spawn the kernel child, wait until it is ready, stop or kill it.

Ray-free (the engine actor wraps it). The child is a fresh interpreter (`subprocess`, so nothing of
the host's threads, Ray or loop leaks into it) running `kernel_main`; the two talk over one ZeroMQ
PAIR socket the host binds on loopback: the child reports `ready` with its endpoints, the host
sends `stop` / `stats` / `epoch`. The data plane (intake PULL, events PUB, broker DEALER) does not
pass through the host at all.

Calls are not thread-safe: one owner thread drives an instance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq

from adapters.engines.nautilus.config import NautilusEngineConfig, encode_config
from adapters.engines.nautilus.control import (
    AskKernelStats,
    CancelOpenOrders,
    DemoteKernel,
    KernelCanceled,
    KernelCommand,
    KernelPromoted,
    KernelReady,
    KernelReply,
    KernelStatsReport,
    KernelStopped,
    PromoteKernel,
    SetKernelEpoch,
    StopKernel,
    encode_control,
    reply_decoder,
)
from node.errors import NodeError, TransportError
from node.stats import KernelStats

_REPO_ROOT = str(Path(__file__).resolve().parents[3])


class EngineStartError(NodeError):
    """The Nautilus child did not come up (it failed, exited or timed out)."""


class NautilusEngineProcess:
    """One Nautilus kernel child process bridged to `broker_endpoint`."""

    def __init__(
        self,
        cfg: NautilusEngineConfig,
        broker_endpoint: str,
        log_path: str | None = None,
        python: str = sys.executable,
    ) -> None:
        self._cfg = cfg
        self._broker_endpoint = broker_endpoint
        self._log_path = log_path
        self._python = python
        self._proc: subprocess.Popen | None = None
        self._ctx: zmq.Context | None = None
        self._control: zmq.Socket | None = None
        self._log_file = None
        self.endpoints: dict[str, str] = {}
        self.startup_ms = 0.0  # measured by the child: process start to trader running
        self.ready_ms = 0.0  # measured here: spawn to ready message

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> dict[str, str]:
        """Spawn the child and block until it is ready; returns {"intake": ..., "events": ...}."""
        if self._proc is not None and self.alive():
            return dict(self.endpoints)
        t0 = time.perf_counter()
        self._ctx = zmq.Context()
        control = self._ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        port = control.bind_to_random_port("tcp://" + self._cfg.bind_host)
        self._control = control
        endpoint = "tcp://" + self._cfg.bind_host + ":" + str(port)
        out = subprocess.DEVNULL
        if self._log_path:
            self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in _cleanup
            out = self._log_file
        env = dict(os.environ)
        env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(
            [
                self._python,
                "-m",
                "adapters.engines.nautilus.kernel_main",
                endpoint,
                self._broker_endpoint,
                encode_config(self._cfg),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out if self._log_path else subprocess.DEVNULL,
            cwd=_REPO_ROOT,
            env=env,
        )
        deadline = time.monotonic() + self._cfg.ready_timeout_ms / 1000.0
        while True:
            if control.poll(50):
                msg = _decode_reply(control.recv())
                if type(msg) is KernelReady:
                    break
                self.kill()
                raise EngineStartError("nautilus child failed: " + str(getattr(msg, "error", msg))[:2000])
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._cleanup()
                raise EngineStartError("nautilus child exited with code " + str(code) + " before ready")
            if time.monotonic() > deadline:
                self.kill()
                raise EngineStartError("nautilus child not ready within " + str(self._cfg.ready_timeout_ms) + " ms")
        self.ready_ms = (time.perf_counter() - t0) * 1000.0
        self.startup_ms = msg.startup_ms
        self.endpoints = {"intake": msg.intake, "events": msg.events}
        return dict(self.endpoints)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stats(self, timeout_ms: int = 2_000) -> KernelStats:
        """The child's counters (signals, sent, reports, published, duplicates, ...)."""
        reply = self._request(AskKernelStats(), timeout_ms)
        if type(reply) is not KernelStatsReport:
            raise TransportError("nautilus child answered stats with " + type(reply).__name__)
        return reply.stats

    def cancel_open(self, strategy_id: str | None, timeout_ms: int = 10_000) -> KernelCanceled:
        """The child cancels its open orders (of one strategy, or all) through Nautilus."""
        reply = self._request(CancelOpenOrders(strategy_id), timeout_ms)
        if type(reply) is not KernelCanceled:
            raise TransportError("nautilus child did not cancel: " + str(reply)[:300])
        return reply

    def set_epoch(self, epoch: int, timeout_ms: int = 2_000) -> None:
        """Submit under `epoch` from now on (the supervisor's grant)."""
        self._request(SetKernelEpoch(epoch), timeout_ms)

    def promote(self, epoch: int, expect: int) -> KernelPromoted:
        """A standby child starts submitting under `epoch` once it has processed the first `expect`
        intake frames the host sent it; returns its counts (resent, adopted, in flight, swept, took_ms)."""
        reply = self._request(PromoteKernel(epoch, expect), 2 * self._cfg.promote_query_timeout_ms + 1_000)
        if type(reply) is not KernelPromoted:
            raise EngineStartError("nautilus child did not promote: " + str(getattr(reply, "error", reply))[:500])
        return reply

    def demote(self, timeout_ms: int = 2_000) -> None:
        """The child stops submitting at once (it holds and follows the leader's reports again)."""
        self._request(DemoteKernel(), timeout_ms)

    def stop(self) -> bool:
        """Clean stop (node.stop_async, kernel.dispose in the child); SIGKILL after stop_timeout_ms.

        Returns True when the child stopped cleanly, False when it had to be killed (or was gone).
        """
        if self._proc is None:
            return False
        clean = False
        if self.alive() and self._control is not None:
            try:
                self._control.send(encode_control(StopKernel()), zmq.NOBLOCK)
                deadline = time.monotonic() + self._cfg.stop_timeout_ms / 1000.0
                while time.monotonic() < deadline and self._proc.poll() is None:
                    if self._control.poll(50) and type(_decode_reply(self._control.recv())) is KernelStopped:
                        clean = True
                        self._proc.wait(max(0.1, deadline - time.monotonic()))
                        break
            except (zmq.ZMQError, subprocess.TimeoutExpired, TransportError):
                clean = False
        if self._proc.poll() is None:
            clean = False
            self._proc.kill()
            self._proc.wait(5.0)
        self._cleanup()
        return clean

    def kill(self) -> None:
        """SIGKILL the child at once (chaos tests); reaps it."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(5.0)
        self._cleanup()

    def _request(self, msg: KernelCommand, timeout_ms: int) -> KernelReply:
        if self._control is None or not self.alive():
            raise TransportError("nautilus child is not running")
        self._control.send(encode_control(msg))
        if not self._control.poll(timeout_ms):
            raise TransportError("nautilus child did not answer " + type(msg).__name__)
        return _decode_reply(self._control.recv())

    def _cleanup(self) -> None:
        if self._control is not None:
            self._control.close(0)
            self._control = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _decode_reply(frame: bytes) -> KernelReply:
    try:
        return reply_decoder.decode(frame)
    except Exception as exc:  # noqa: BLE001 - a child speaking another protocol is a transport failure
        raise TransportError("nautilus child sent a frame that is no control reply: " + type(exc).__name__) from None
