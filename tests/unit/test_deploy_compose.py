"""docker-compose.yml against the compose spec (the JSON schema check-jsonschema ships; no network, no
Docker engine), and what a deployment that starts needs: healthchecks and `service_healthy`, only the
intake, events, API and Grafana published, pinned images, restart policies, no secret in the file,
secrets from files. The Dockerfile: a user, a dependency layer from requirements.lock, a HEALTHCHECK."""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.resources
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = (ROOT / "requirements.lock").read_text()

PUBLISHED = {"node": {5555, 5556, 8080}, "grafana": {3000}}


def _schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def _validate(doc: dict) -> None:
    schema = _schema()
    jsonschema.validate(doc, schema, cls=jsonschema.validators.validator_for(schema))


def test_compose_file_follows_the_compose_spec():
    _validate(COMPOSE)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["services"]["node"].__setitem__("depends_on", {"redis": {"condition": "healthy-ish"}}),
        lambda d: d["services"]["redis"].__setitem__("restart", 7),
        lambda d: d["services"]["node"].__setitem__("portz", ["1:1"]),
        lambda d: d["networks"]["backend"].__setitem__("internal", [True]),
        lambda d: d["services"]["node"].__setitem__("secrets", "redis_url"),
    ],
)
def test_the_schema_check_refuses_a_broken_file(breakage):
    doc = copy.deepcopy(COMPOSE)
    breakage(doc)
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc)


def test_every_service_has_a_healthcheck_a_pinned_image_and_a_restart_policy():
    for name, svc in COMPOSE["services"].items():
        assert svc.get("healthcheck", {}).get("test"), name
        assert svc.get("restart") in ("unless-stopped", "always"), name
        image = svc.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]*\d[\w.-]*(@sha256:[0-9a-f]{64})?", image), name + ": unpinned " + image
        assert ":latest" not in image, name


def test_the_node_waits_for_healthy_stores():
    deps = COMPOSE["services"]["node"]["depends_on"]
    assert deps["redis"]["condition"] == "service_healthy"
    assert deps["postgres"]["condition"] == "service_healthy"


def test_only_the_intake_events_api_and_dashboards_are_published():
    assert COMPOSE["networks"]["backend"]["internal"] is True
    for name, svc in COMPOSE["services"].items():
        ports = {int(str(p).split(":")[-1].split("/")[0]) for p in svc.get("ports", [])}
        assert ports == PUBLISHED.get(name, set()), name
        if name not in PUBLISHED:
            assert svc["networks"] == ["backend"], name + " must sit on the internal network only"


def test_the_node_config_fixes_the_ports_the_compose_file_publishes():
    cfg = tomllib.loads((ROOT / "deploy" / "node.toml").read_text())
    assert cfg["intake"]["port"] == 5555 and cfg["events_port"] == 5556 and cfg["api"]["port"] == 8080
    assert cfg["bind_host"] == "0.0.0.0" and cfg["api"]["host"] == "0.0.0.0"
    from node.config import load_config

    assert load_config(ROOT / "deploy" / "node.toml", {}).events_port == 5556  # the real loader takes it


def test_no_secret_in_the_compose_file_and_every_secret_from_a_file():
    for name, svc in COMPOSE["services"].items():
        assert "PASSWORD" not in " ".join(svc.get("command") or []).upper(), name
    for name, svc in COMPOSE["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"password|secret|token|keys|_url$", key.lower()):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), name + ": " + key
        for secret in svc.get("secrets", []):
            assert secret in COMPOSE["secrets"], secret
    for secret in COMPOSE["secrets"].values():
        assert secret["file"].startswith("./deploy/secrets/")
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_a_user_with_dependencies_in_their_own_layer_and_a_healthcheck():
    steps = _instructions()
    words = [w for w, _ in steps]
    assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+", steps[0][1]), "pin the base image"
    lock_copy = steps.index(("COPY", "requirements.lock ./"))
    lock_install = next(i for i, (w, r) in enumerate(steps) if w == "RUN" and "-r requirements.lock" in r)
    first_code = next(i for i, (w, r) in enumerate(steps) if w == "COPY" and r.startswith(("node", "pyproject")))
    assert lock_copy < lock_install < first_code, "dependencies must be installed before the code is copied"
    user = max(i for i, w in enumerate(words) if w == "USER")
    assert steps[user][1] not in ("root", "0") and user < words.index("CMD")
    assert "HEALTHCHECK" in words


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_every_dependency_of_pyproject_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked()
    for text in project["dependencies"]:
        req = Requirement(text)
        assert _norm(req.name) in pins, req.name + " is not in requirements.lock (run scripts/lock)"
        assert req.specifier.contains(pins[_norm(req.name)], prereleases=True), req.name


def test_the_lock_is_closed_under_dependencies():
    """Every requirement of a locked package (as installed here) is locked too, extras included:
    the image installs the lock with --no-deps, so a hole would be a missing module at run time."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked()
    todo = [(Requirement(t).name, frozenset(Requirement(t).extras)) for t in project["dependencies"]]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        if (_norm(name), extras) in seen:
            continue
        seen.add((_norm(name), extras))
        try:
            if importlib.metadata.version(name) != pins.get(_norm(name)):
                continue  # another version here: its metadata does not describe the locked one
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: pinned (checked above), its own needs unknown
        for text in requires:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            assert _norm(req.name) in pins, name + " needs " + req.name + ", not in requirements.lock"
            todo.append((req.name, frozenset(req.extras)))
