"""The import contract (README: Layout; DESIGN: imports run one way), checked over every import statement,
function-level ones included:

- node/ imports neither actors/ nor adapters/, except its wiring modules (WIRING: the CLI and the runtime
  that starts the node's actors);
- adapters/ import node/ only (never actors/);
- node/ may import nae_client (client/nae_client, the one definition of the client's wire, signing,
  client and fallback), and nae_client imports none of the node's packages (Optimus installs it alone);
- the product (node/, actors/, adapters/, nae_client) never imports bench/ or tests/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: package -> its folder in the checkout
PRODUCT = {"node": "node", "actors": "actors", "adapters": "adapters", "nae_client": "client/nae_client"}
#: node/ modules that wire the actors together (and so may import them)
WIRING = {"node/cli.py", "node/runtime.py"}
#: package -> top-level packages of this repository it must never import
FORBIDDEN = {
    "node": {"actors", "adapters", "bench", "tests"},
    "adapters": {"actors", "bench", "tests"},
    "actors": {"bench", "tests"},
    "nae_client": {"node", "actors", "adapters", "bench", "tests"},
}
OURS = {"node", "actors", "adapters", "bench", "tests", "nae_client"}


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in `source` that names one of ours."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in OURS]
    return out


def violations(root: Path) -> list[str]:
    found = []
    for package, folder in PRODUCT.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            forbidden = FORBIDDEN[package] - ({"actors", "adapters"} if rel in WIRING else set())
            for line, imported in imported_packages(path.read_text()):
                if imported in forbidden:
                    found.append(rel + ":" + str(line) + " imports " + imported)
    return found


def test_the_product_keeps_the_import_contract():
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    "rel, source, bad",
    [
        ("node/x.py", "from actors.engine import EngineHost\n", True),
        ("node/x.py", "def f():\n    import adapters.paper\n", True),
        ("node/x.py", "from bench import run\n", True),
        ("node/cli.py", "from actors.supervisor import Supervisor\n", False),
        ("node/cli.py", "def f():\n    from bench import run\n", True),
        ("adapters/x.py", "from actors.service import tune\n", True),
        ("adapters/x.py", "from node.messages import encode\n", False),
        ("actors/x.py", "from tests.fakes import venue\n", True),
        ("actors/x.py", "from adapters.paper.venue import PaperVenue\nfrom .y import z\n", False),
        ("node/x.py", "from nae_client.wire import Reply\n", False),
        ("client/nae_client/x.py", "from nae_client.wire import Reply\n", False),
        ("client/nae_client/x.py", "from node.messages import Signal\n", True),
        ("client/nae_client/x.py", "def f():\n    import actors.validator\n", True),
    ],
)
def test_the_contract_check_catches_what_it_must(tmp_path, rel, source, bad):
    for folder in PRODUCT.values():
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / rel).write_text(source)
    assert bool(violations(tmp_path)) is bad
