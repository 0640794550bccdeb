"""Does a process still exist on this machine? (`os.kill(pid, 0)`, a zombie counted as gone.)"""

from __future__ import annotations

import os

__all__ = ["pid_alive"]


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie (killed, not yet reaped: it does no work)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        with open("/proc/" + str(pid) + "/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True
