"""A port for a child process to bind later: free now, and out of the way of outgoing connections.

The supervisor picks its children's ports before they start (a restarted child comes back on the same
address) and a child binds its port seconds later. A port picked by binding to port 0 comes from the
OS's range for the local ports of outgoing connections (Linux: 32768-60999), so in those seconds the OS
could hand the same number to any connection this machine opened (to Redis, PostgreSQL, a peer's
socket), and the child's bind failed: "Address already in use (addr='tcp://127.0.0.1:32973')" at a node
start in a clean-clone CI run. Ports are therefore picked at random from just below that range, where
the OS never hands out a connection's local port, each checked free by a bind; with no room below it
(a machine whose range starts low), a port from the OS as before.
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_port", "pick_range"]

#: the OS's range for outgoing connections' local ports, read once (Linux's default when unreadable)
_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_LINUX_DEFAULT = (32768, 60999)
#: how many ports below that range are picked from
_SPAN = 12_000
_TRIES = 64


def outgoing_range(path: str = _RANGE_FILE) -> tuple[int, int]:
    try:
        with open(path) as f:
            low, high = (int(x) for x in f.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return _LINUX_DEFAULT


def pick_range(outgoing: tuple[int, int] | None = None) -> range | None:
    """The ports picked from: the `_SPAN` just below the outgoing range, above the privileged ones;
    None when there is no such room (at least 1,000 ports)."""
    low = (outgoing or outgoing_range())[0]
    first = max(1024, low - _SPAN)
    return range(first, low) if low - first >= 1_000 else None


def _binds(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str, taken: set[int] | frozenset[int] = frozenset(), ports: range | None = None,
              rng: random.Random | None = None) -> int:
    """A port free on `host` now and not in `taken` (picked before and not bound yet), from
    `ports` (default `pick_range()`); a port the OS gives when none of `_TRIES` random ones is free."""
    ports = ports if ports is not None else pick_range()
    if ports is not None:
        choose = (rng or random).randrange
        for _ in range(_TRIES):
            port = choose(ports.start, ports.stop)
            if port not in taken and _binds(host, port):
                return port
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
