"""deploy/compose.yaml against the Compose Specification's JSON Schema, plus the wiring a schema cannot see.

The schema is compose_spec.json as shipped in the docker-compose 1.29.2 wheel on PyPI (Apache-2.0), vendored here:
no Docker is needed to run these tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from lsd.store.local import free_port
from tests.support.gateway import ROOT, run_lsd

DEPLOY = ROOT / "deploy"
SCHEMA = json.loads((Path(__file__).parent / "compose_spec.json").read_text())


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_compose_file_matches_the_compose_spec() -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft201909Validator(SCHEMA).iter_errors(_compose())
    ]
    assert errors == []


def test_the_schema_rejects_a_broken_file() -> None:
    broken = _compose()
    broken["services"]["lsd-1"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken["services"]["nginx"]["portz"] = ["3000:80"]
    where = {tuple(e.absolute_path)[:2] for e in jsonschema.Draft201909Validator(SCHEMA).iter_errors(broken)}
    assert where >= {("services", "lsd-1"), ("services", "nginx")}


def test_services_and_their_order() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "postgres",
        "migrate",
        "lsd-1",
        "lsd-2",
        "nginx",
        "fake-openai",
        "prometheus",
        "grafana",
        "otel-collector",
    }
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert services["migrate"]["command"][0] == "migrate" and services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for replica in ("lsd-1", "lsd-2"):
        service = services[replica]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["environment"]["LSD_DATABASE_URL"].endswith("@postgres:5432/lsd")
        assert service["environment"]["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].startswith("http://otel-collector:4318")
        assert service["build"]["target"] == "lsd"
    assert services["fake-openai"]["build"]["target"] == "fake-openai"


def test_nginx_balances_both_replicas() -> None:
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    upstream = re.search(r"upstream lsd \{(.*?)\}", conf, re.S)
    assert upstream is not None
    assert re.findall(r"server (\S+) ", upstream.group(1)) == ["lsd-1:3000", "lsd-2:3000"]
    assert "proxy_buffering off" in conf  # streaming answers
    assert conf.count("{") == conf.count("}")


def test_every_mounted_file_exists() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"{name} mounts missing {source}"


def test_the_replicas_outlast_their_drain() -> None:
    services = _compose()["services"]
    config = tomllib.loads((DEPLOY / "lsd.compose.toml").read_text())
    drain = config["gateway"]["graceful_timeout_s"] + config["gateway"]["observability"]["shutdown_flush_timeout_s"]
    for replica in ("lsd-1", "lsd-2"):
        grace = services[replica]["stop_grace_period"]
        assert grace.endswith("s") and int(grace[:-1]) > drain


def test_the_compose_config_passes_lsd_config_check() -> None:
    result = run_lsd("config", "check", str(DEPLOY / "lsd.compose.toml"))
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_each_replica_and_loads_the_alerts() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    targets = [t for config in job["static_configs"] for t in config["targets"]]
    assert sorted(targets) == ["lsd-1:3000", "lsd-2:3000"]
    mounts = {v.split(":")[1] for v in _compose()["services"]["prometheus"]["volumes"]}
    for rules in prometheus["rule_files"]:
        assert f"/etc/prometheus/{rules}" in mounts


def test_the_replicas_export_traces_to_the_collector() -> None:
    config = tomllib.loads((DEPLOY / "lsd.compose.toml").read_text())
    assert config["gateway"]["export"]["otlp"]["traces"]["enabled"] is True


def test_otel_collector_has_a_traces_pipeline() -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    for kind in ("receivers", "processors", "exporters"):
        for component in traces[kind]:
            assert component in config[kind], f"{kind}: {component} is not defined"
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")


def test_grafana_provisioning() -> None:
    sources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    dashboards = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/lsd.yaml").read_text())
    grafana = _compose()["services"]["grafana"]
    mounted = {v.split(":")[1] for v in grafana["volumes"]}
    path = dashboards["providers"][0]["options"]["path"]
    assert any(m.startswith(path + "/") for m in mounted)


@pytest.fixture
def fake_openai() -> Any:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(DEPLOY / "fake-openai" / "serve.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.HTTPError:
            assert process.poll() is None, "the fake OpenAI service exited"
            assert time.monotonic() < deadline, "the fake OpenAI service did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    assert process.wait(10) == 0


def test_the_fake_openai_service_answers(fake_openai: str) -> None:
    r = httpx.post(
        f"{fake_openai}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: hi"
