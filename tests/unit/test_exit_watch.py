"""node.exit_watch: a watched process's exit polls readable at once; what is no longer wanted is closed."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

from node.exit_watch import ExitWatch


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _readable(fds: list[int], timeout_s: float) -> list[int]:
    return select.select(fds, [], [], timeout_s)[0]


def test_a_killed_process_is_reported_once_and_a_live_one_never():
    alive, killed = _sleeper(), _sleeper()
    watch = ExitWatch()
    try:
        opened, closed = watch.sync({"engine:a": alive.pid, "engine:b": killed.pid})
        assert len(opened) == 2 and closed == []
        assert _readable(opened, 0.2) == []  # both running
        os.kill(killed.pid, signal.SIGKILL)  # not reaped yet: the kernel tells all the same
        ready = _readable(opened, 5)
        assert len(ready) == 1
        assert watch.exited(ready[0]) == ("engine:b", killed.pid)
        assert watch.exited(ready[0]) is None  # reported once, watched no more
        assert watch.sync({"engine:a": alive.pid, "engine:b": killed.pid}) == ([], [])  # not reopened
        assert watch.sync({"engine:a": alive.pid}) == ([], [])  # unchanged: nothing reopened
    finally:
        watch.close()
        for p in (alive, killed):
            p.kill()
            p.wait()


def test_a_new_pid_for_a_role_replaces_the_old_one_and_a_role_not_wanted_is_closed():
    first, second = _sleeper(), _sleeper()
    watch = ExitWatch()
    try:
        (fd1,), _ = watch.sync({"engine:a": first.pid})
        opened, closed = watch.sync({"engine:a": second.pid})
        assert closed == [fd1] and len(opened) == 1  # (the kernel may hand the closed number out again)
        assert _readable(opened, 0.1) == []
        second.kill()
        assert watch.exited(_readable(opened, 5)[0]) == ("engine:a", second.pid)
        (fd3,), _ = watch.sync({"engine:a": first.pid})
        assert watch.sync({}) == ([], [fd3])
    finally:
        watch.close()
        for p in (first, second):
            p.kill()
            p.wait()


def test_a_reaped_pid_is_not_watched_nor_tried_again(monkeypatch):
    gone = _sleeper()
    gone.kill()
    gone.wait()  # reaped: the pid names nothing
    watch = ExitWatch()
    assert watch.sync({"engine:a": gone.pid}) == ([], [])
    tries: list[int] = []
    real = os.pidfd_open
    monkeypatch.setattr(os, "pidfd_open", lambda pid, *a: tries.append(pid) or real(pid, *a))
    assert watch.sync({"engine:a": gone.pid}) == ([], []) and tries == []  # not tried again
    live = _sleeper()
    try:
        opened, _ = watch.sync({"engine:a": live.pid})  # another pid for the role: watched
        assert tries == [live.pid] and len(opened) == 1
    finally:
        watch.close()
        live.kill()
        live.wait()
