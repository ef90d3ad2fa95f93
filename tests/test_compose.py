"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine.

`docker compose config` (the compose v2 CLI plugin, `make compose-plugin`) validates the file
and resolves it; the same structural checks then run on its resolved model. Without the
plugin those tests skip, and the checks run on the YAML as written (PyYAML).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from devstack.config import PROJECT_ROOT, DevstackConfig

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
APP_SERVICES = {"setup", "worker", "twitter", "newsapi", "bluesky", "demo"}
ONE_SHOT = {"setup", "demo"}
PROFILES = {"twitter": "twitter", "newsapi": "newsapi", "bluesky": "bluesky", "demo": "demo"}
# Kibana can only turn healthy after `setup` has set the kibana_system password (security on),
# so `setup` waits for it to be started; `streamapp.kibana import` then waits for it itself.
STARTED_ONLY = {("setup", "kibana")}


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return [docker, "compose"] if probe.returncode == 0 else None


def env_example() -> dict[str, str]:
    """The variables .env.example sets (uncommented), values unquoted as compose reads them."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def written_model() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def resolved_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    command = compose_command()
    if command is None:
        pytest.skip(
            "no `docker compose` (the compose v2 CLI plugin): `make compose-plugin` builds it "
            "from the Go module proxy (about 5 minutes on 2 cores)"
        )
    workdir = tmp_path_factory.mktemp("compose")
    shutil.copy(COMPOSE_FILE, workdir / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, workdir / ".env")
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "--profile", "*", "config", "--format", "json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_structure(model: dict[str, Any], resolved: bool) -> None:
    services: dict[str, dict[str, Any]] = model["services"]
    assert set(services) == APP_SERVICES | {"kafka", "elasticsearch", "kibana"}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip = port["host_ip"] if resolved else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond 127.0.0.1"
        if name not in ONE_SHOT:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
            assert svc.get("restart") == "unless-stopped", name
        else:
            assert svc.get("restart") == "no", name
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for dep, spec in depends.items():
            wanted = "service_started" if (name, dep) in STARTED_ONLY else None
            condition = spec.get("condition")
            if wanted:
                assert condition == wanted, (name, dep, condition)
            else:
                assert condition in ("service_healthy", "service_completed_successfully"), (
                    name,
                    dep,
                    condition,
                )
            if dep in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, dep)
    for name in APP_SERVICES - {"setup"}:
        assert "setup" in services[name]["depends_on"], f"{name} starts before setup"
    for name, profile in PROFILES.items():
        assert services[name].get("profiles") == [profile], name
    for name in ("kafka", "elasticsearch", "kibana", "setup", "worker"):
        assert not services[name].get("profiles"), f"{name} must start by default"
    worker_env = services["worker"]["environment"]
    assert worker_env["STREAMAPP_WEB_HOST"] == "0.0.0.0"
    setup_cmd = services["setup"]["command"]
    assert "python -m streamapp.bootstrap && python -m streamapp.kibana import" in setup_cmd[-1]
    volumes = {
        v.split(":")[0] if isinstance(v, str) else v["source"]
        for v in (
            *services["kafka"]["volumes"],
            *services["elasticsearch"]["volumes"],
            *services["worker"]["volumes"],
        )
    }
    assert volumes == {"kafka-data", "es-data", "worker-data"}
    assert volumes <= set(model["volumes"])


def test_compose_file_structure() -> None:
    model = written_model()
    check_structure(model, resolved=False)
    services = model["services"]
    for name in APP_SERVICES:
        env_file = services[name]["env_file"]
        assert [e["path"] for e in env_file] == [".env"], name
        assert services[name]["build"] == ".", name
    # The same versions as the local stack (devstack), so tests and compose agree.
    cfg = DevstackConfig.from_env()
    assert services["kafka"]["image"] == f"apache/kafka:{cfg.kafka_version}"
    for name in ("elasticsearch", "kibana"):
        default = re.search(r"\$\{ELASTIC_VERSION:-([^}]+)\}", services[name]["image"])
        assert default and default.group(1) == cfg.elasticsearch_version, name
        assert env_example()["ELASTIC_VERSION"] == cfg.elasticsearch_version


def test_docker_compose_config(resolved_model: dict[str, Any]) -> None:
    check_structure(resolved_model, resolved=True)
    services = resolved_model["services"]
    example = env_example()
    for name in APP_SERVICES:
        env = services[name]["environment"]
        # env_file is merged into `environment` by `config`: every .env value must be there.
        missing = sorted(set(example) - set(env))
        assert not missing, f"{name} does not get {missing} from .env"
        assert env["STREAMAPP_KAFKA_BROKER"] == "kafka://kafka:9092"
        assert env["STREAMAPP_ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
    assert services["setup"]["environment"]["STREAMAPP_KIBANA_URL"] == "http://kibana:5601"
    kibana_env = services["kibana"]["environment"]
    # Security off by default: Kibana gets no credentials at all, not an empty user.
    assert kibana_env["ELASTICSEARCH_USERNAME"] == ""
    assert services["elasticsearch"]["environment"]["xpack.security.enabled"] == "false"


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    base = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[0]), base
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users
    assert "PIP_NO_CACHE_DIR=1" in text
    assert "[dev]" not in text
    assert re.search(r'^CMD \["faust", "-A", "streamapp", "worker", "-l", "info"\]$', text, re.M)
    # The build context is an allow-list: everything ignored, then the package let back in.
    lines = [ln for ln in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if ln]
    rules = [ln for ln in lines if not ln.startswith("#")]
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!streamapp/"} <= set(rules)


def settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic settings class in the package, found by reading the sources."""
    found = []
    for path in sorted((PROJECT_ROOT / "streamapp").rglob("*.py")):
        if "BaseSettings" not in path.read_text():
            continue
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
        for _, cls in inspect.getmembers(module, inspect.isclass):
            # Only classes defined there, not imported ones (each is found once).
            if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def env_names(cls: type[BaseSettings]) -> list[str]:
    prefix = cls.model_config.get("env_prefix", "")
    names = []
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        names.append(alias if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return names


def test_env_example_lists_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    classes = settings_classes()
    assert len(classes) >= 4, classes
    wanted = {name for cls in classes for name in env_names(cls)}
    wanted |= {"TWITTER_BEARER_TOKEN", "NEWSAPI_KEY", "EAI_USERNAME", "EAI_PASSWORD"}
    assert not sorted(wanted - documented), "missing from .env.example"

    # Secrets are empty; the values that are set are valid for every settings class.
    values = env_example()
    for secret in ("TWITTER_BEARER_TOKEN", "NEWSAPI_KEY", "EAI_PASSWORD", "ELASTIC_PASSWORD"):
        assert values[secret] == "", secret
    for name in list(os.environ):
        if name.startswith("STREAMAPP_"):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for cls in classes:
        cls()  # raises ValidationError naming the bad variable


@pytest.mark.integration
def test_source_healthcheck_tracks_the_broker(devstack: DevstackConfig) -> None:
    """The sources' health check, run as compose would, against the real Kafka and a dead port."""
    test = written_model()["x-source-healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    command = [sys.executable, "-c", test[3]]

    def run(broker: str) -> int:
        env = {**os.environ, "STREAMAPP_KAFKA_BROKER": broker}
        return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

    assert run(f"kafka://{devstack.kafka_bootstrap}") == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: refused
        assert run(dead) != 0
