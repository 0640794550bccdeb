"""One node per data folder: an exclusive lock on `<data_dir>/node.lock`, taken before anything else.

The embedded Redis and PostgreSQL of a data folder are adopted by whoever starts on it, and
stopped by whoever stops; a second `execnode up` on the folder of a running node would stop the
running node's stores on its way out. The lock makes the second one refuse before it touches
anything. It is an `flock` on an open file: the kernel drops it when the holder exits, kill -9
included, so a crashed node never leaves a stale lock behind. The file names the holder (pid and
node id) for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from node.errors import NodeError

LOCK_NAME = "node.lock"


class DataDirBusy(NodeError):
    """Another live process holds the data folder's lock."""


class DataDirLock:
    """`acquire()` or raise `DataDirBusy`; `release()` (idempotent) unlocks. A context manager too."""

    def __init__(self, data_dir: str | Path, node_id: str) -> None:
        self.path = Path(data_dir).resolve() / LOCK_NAME
        self._node_id = node_id
        self._fd: int | None = None

    def acquire(self) -> "DataDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DataDirBusy(
                "data folder " + str(self.path.parent) + " is in use by a running node (" + holder
                + "); stop it first (Ctrl-C or SIGTERM), or give this node another data_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("pid=%d node=%s\n" % (os.getpid(), self._node_id)).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DataDirLock":
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"
