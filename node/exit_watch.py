"""Processes on this machine watched for their exit, as the kernel tells it (a pid file descriptor).

The supervisor judges a leader dead by three missed heartbeats (~60 ms at the default 20 ms), and
sooner when it knows the leader's process is gone, but only when it next looks. The kernel knows at
once: `os.pidfd_open(pid)` gives a descriptor that polls readable when the process terminates
(kill -9 included, before anyone reaps it). `ExitWatch` keeps one per watched role, for the pids the
supervisor learned on this machine; its heartbeat loop polls them beside the heartbeats and fails a
group over the moment its leader's process exits (`node.failover.Detector.EXIT`).

A pid is watched from the moment `sync` is given it: a process that had exited by then is reported at
the first poll (what the supervisor learned ran there is gone). A role's pid is reported once, and one
that could not be opened is not tried again, until `sync` is given another pid for that role (the
supervisor learns the next leader's at its promotion). A pid reused by another process since
is watched as that process: it may never be reported, never falsely. Where pid descriptors are not
available (not Linux, a kernel before 5.3, a sandbox that forbids them) nothing is watched and the
heartbeats decide alone (`available` says which).
"""

from __future__ import annotations

import os

__all__ = ["ExitWatch"]


class ExitWatch:
    """role -> (pid, descriptor) for the processes watched."""

    def __init__(self) -> None:
        self._by_role: dict[str, tuple[int, int]] = {}
        self._role_of_fd: dict[int, str] = {}
        self._spent: dict[str, int] = {}  # role -> its pid reported, or not openable: not watched again
        self.available = hasattr(os, "pidfd_open")

    def sync(self, wanted: dict[str, int]) -> tuple[list[int], list[int]]:
        """Watch exactly `wanted` (role -> pid): (descriptors opened, descriptors closed), for the
        caller's poller. A pid that cannot be opened (gone and reaped, not permitted) is not watched."""
        opened: list[int] = []
        closed: list[int] = []
        for role, (pid, fd) in list(self._by_role.items()):
            if wanted.get(role) != pid:
                closed.append(self._drop(role, fd))
        for role, pid in list(self._spent.items()):
            if wanted.get(role) != pid:
                del self._spent[role]
        if not self.available:
            return opened, closed
        for role, pid in wanted.items():
            if role in self._by_role or self._spent.get(role) == pid:
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # reaped already, or not permitted: the heartbeats decide
                self._spent[role] = pid
                continue
            self._by_role[role] = (pid, fd)
            self._role_of_fd[fd] = role
            opened.append(fd)
        return opened, closed

    def exited(self, fd: int) -> tuple[str, int] | None:
        """The (role, pid) whose descriptor polled readable; it is watched no more (None: not ours)."""
        role = self._role_of_fd.get(fd)
        if role is None:
            return None
        pid, _ = self._by_role[role]
        self._drop(role, fd)
        self._spent[role] = pid
        return role, pid

    def close(self) -> None:
        for role, (_, fd) in list(self._by_role.items()):
            self._drop(role, fd)

    def _drop(self, role: str, fd: int) -> int:
        del self._by_role[role]
        self._role_of_fd.pop(fd, None)
        try:
            os.close(fd)
        except OSError:
            pass
        return fd
