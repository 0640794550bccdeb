"""`pip install ./client` (the nae-client distribution Optimus installs) gives a working client with
the node's packages out of reach: the install is built from a copy of client/ alone (the checkout
is left as it was), into a folder of its own, and imported with node/actors/adapters, Ray, NautilusTrader and numba blocked.
(pyzmq, msgspec and redis come from this environment: --no-deps, no index needed.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("ray", "nautilus_trader", "numba", "numpy", "node", "actors", "adapters", "bench", "asyncpg")

_IMPORT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in set(%r):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, %r)
import nae_client
from nae_client import ExecutionClient, AsyncExecutionClient, HttpExecutionClient, ReportLog
from nae_client.fallback import FallbackChannel
from nae_client.signing import make_envelope
from nae_client.wire import Reply, encode, response_decoder
reply = response_decoder.decode(encode(Reply(status="ACCEPTED", request_id="r")))
print(nae_client.__file__, reply.status)
"""


def test_pip_install_client_works_without_the_node(tmp_path):
    source, target = tmp_path / "client", tmp_path / "site"
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([sys.executable, "-I", "-c", _IMPORT % (BLOCKED, str(target))], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    where, status = run.stdout.split()
    assert Path(where).is_relative_to(target) and status == "ACCEPTED"
