"""docker-compose.yml against the Compose Specification's JSON schema (no container engine here), and the
parts that must fit together: images and builds, ports, health checks, dependencies, the EMQX config mount
and the variables render.sh needs, the worker's scalability and the simulator profile."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "compose" / "compose-spec.json"
ADAPTER_SERVICES = ("api", "worker", "simulator")
EMQX_IMAGE = "emqx/emqx:5.8.9"  # a full version: a `5.8` tag may not exist or may be older
RENDER_VARS = {"ADAPTER_BASE_URL", "ADAPTER_INGEST_TOKEN", "ADAPTER_EMQX_API_KEY", "ADAPTER_EMQX_API_SECRET"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = compose["services"]
    return out


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def healthcheck_text(svc: dict[str, Any]) -> str:
    test = svc["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def published(svc: dict[str, Any]) -> list[tuple[int, int]]:
    out = []
    for port in svc.get("ports", []):
        host, _, container = str(port).rpartition(":")
        out.append((int(host), int(container)))
    return out


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    if not SPEC.exists():
        pytest.skip(f"Compose Specification schema not found at {SPEC}")
    schema = json.loads(SPEC.read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@dataclass
class Stage:
    name: str  # '' when unnamed (the last one, the default target)
    base: str  # an image, or an earlier stage's name
    lines: list[str]


def dockerfile_stages() -> list[Stage]:
    stages: list[Stage] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            words = line.split()
            stages.append(Stage(words[3] if len(words) > 3 and words[2].upper() == "AS" else "", words[1], []))
        elif stages:
            stages[-1].lines.append(line)
    return stages


def runs_as(stages: list[Stage], stage: Stage) -> str:
    """The user a stage's image runs as: its last USER, else that of the stage it builds on, else root."""
    users = [line.split()[1].split(":")[0] for line in stage.lines if line.startswith("USER ")]
    if users:
        return users[-1]
    parent = [s for s in stages if s.name and s.name == stage.base]
    return runs_as(stages, parent[0]) if parent else "root"


def test_every_service_has_an_image_and_the_adapter_ones_share_one_build(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    assert set(svcs) == {"redis", "emqx", *ADAPTER_SERVICES}
    assert svcs["emqx"]["image"] == EMQX_IMAGE
    name, _, tag = svcs["redis"]["image"].partition(":")
    assert name == "redis" and tag.startswith("7")
    # api and worker run the service image (the default target); the simulator, a dev tool, the `devtools`
    # target of the same Dockerfile (the service image plus devtools/)
    assert svcs["api"]["image"] == svcs["worker"]["image"] != svcs["simulator"]["image"]
    assert svcs["api"]["build"] == svcs["worker"]["build"] and "target" not in svcs["api"]["build"]
    assert svcs["simulator"]["build"] == {**svcs["api"]["build"], "target": "devtools"}
    assert "devtools" in [stage.name for stage in dockerfile_stages()]
    for name in ADAPTER_SERVICES:
        build = svcs[name]["build"]
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
        assert command(svcs[name])[0] == "adapter"


def test_every_emqx_image_named_anywhere_is_the_pinned_one() -> None:
    named = {}
    for path in (ROOT / "docker-compose.yml", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for tag in re.findall(r"emqx/emqx:[\w.-]+", path.read_text()):
            named.setdefault(tag, path.name)
    assert EMQX_IMAGE in named
    assert set(named) == {EMQX_IMAGE}, named


def test_redis_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    redis = services(compose)["redis"]
    cmd = command(redis)
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_published_ports_are_distinct_and_match_what_listens(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    hosts = [h for svc in svcs.values() for h, _ in published(svc)]
    assert len(hosts) == len(set(hosts))
    api_cmd = command(svcs["api"])
    api_port = int(api_cmd[api_cmd.index("--port") + 1])
    assert (api_port, api_port) in published(svcs["api"])
    assert {1883, 18083} <= {c for _, c in published(svcs["emqx"])}


def test_the_worker_scales(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert command(worker)[:2] == ["adapter", "worker"]


def test_health_checks_ask_the_right_endpoints(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    assert "/api/v5/status" in healthcheck_text(svcs["emqx"])
    assert "18083" in healthcheck_text(svcs["emqx"])
    api_port = command(svcs["api"])[command(svcs["api"]).index("--port") + 1]
    assert f"127.0.0.1:{api_port}/readyz" in healthcheck_text(svcs["api"])
    assert "ping" in healthcheck_text(svcs["redis"])


def test_emqx_is_healthy_only_when_its_status_answers_2xx(compose: dict[str, Any]) -> None:
    """The emqx/emqx:5.8.9 image ships curl; `-f` makes the 503 of a node that is not running a failure."""
    test = services(compose)["emqx"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "curl"] and "-fsS" in test
    assert test[-1] == "http://127.0.0.1:18083/api/v5/status"


def test_dependencies_exist_and_wait_only_for_health_checks_that_exist(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    for name, svc in svcs.items():
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in svcs and dep != name
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in svcs[dep], f"{name} waits for {dep}, which has no health check"
            assert not svcs[dep].get("profiles"), f"{name} depends on {dep}, which only runs in a profile"


def test_emqx_gets_its_rendered_config_and_every_value_render_needs(compose: dict[str, Any]) -> None:
    emqx = services(compose)["emqx"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in emqx["volumes"]}
    script = emqx["entrypoint"][-1]
    config_dir = str(Path(script).parent)
    assert (ROOT / mounts[config_dir] / Path(script).name).is_file()
    assert set(emqx["environment"]) >= RENDER_VARS
    assert command(emqx)[0] == "/usr/bin/docker-entrypoint.sh", "render.sh hands over to the image's own"


def test_both_ends_share_the_secrets_and_the_addresses_match(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    emqx_env, api_env = svcs["emqx"]["environment"], svcs["api"]["environment"]
    for name in ("ADAPTER_INGEST_TOKEN", "ADAPTER_EMQX_API_KEY", "ADAPTER_EMQX_API_SECRET"):
        assert emqx_env[name] == api_env[name] and api_env[name].startswith(f"${{{name}")
    api_port = command(svcs["api"])[command(svcs["api"]).index("--port") + 1]
    assert emqx_env["ADAPTER_BASE_URL"] == f"http://api:{api_port}"
    assert api_env["ADAPTER_EMQX_API_URL"] == "http://emqx:18083/api/v5"
    assert api_env["ADAPTER_REDIS_URL"].startswith("redis://redis:6379/")
    assert svcs["worker"]["environment"] == {**api_env, "ADAPTER_WORKER_NICE": "10"}  # the API gets the CPU first


def test_the_simulator_is_a_profile_that_connects_to_emqx(compose: dict[str, Any]) -> None:
    sim = services(compose)["simulator"]
    assert sim["profiles"] == ["simulator"]
    cmd = command(sim)
    assert cmd[:2] == ["adapter", "simulate"]
    assert (cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1]) == ("emqx", "1883")


def test_every_variable_the_file_reads_is_explained_in_the_docs(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    names = set(re.findall(r"\$\{([A-Z_]+)[:?}-]", text))
    docs = (ROOT / "docs" / "emqx.md").read_text()
    assert names and all(name in docs for name in names), names - {n for n in names if n in docs}


def test_the_image_is_slim_pinned_and_unprivileged() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = dockerfile_stages()
    names = {stage.name for stage in stages if stage.name}
    outside = [stage.base for stage in stages if stage.base not in names]  # the others build on an earlier stage
    assert outside and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", b) for b in outside), outside
    assert (stages[-1].name, stages[-1].base) == ("", "service"), "the default target is the service image"
    for stage in stages:
        if stage.name in ("service", "devtools", ""):
            assert runs_as(stages, stage) not in ("root", "0"), stage.name
    service = next(stage for stage in stages if stage.name == "service")
    carried = [line for line in service.lines if (line.startswith("COPY") and "devtools" in line)
               or "emqx-device-adapter-devtools" in line]
    assert not carried, f"the service image carries no dev tool: {carried}"
    assert any(line.startswith("COPY rules") for line in lines), "adapter emqx apply reads ./rules"
    kept = {line.lstrip("!").rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")}
    assert {"pyproject.toml", "README.md", "adapter", "rules", "devtools"} <= kept
