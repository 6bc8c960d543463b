"""The shipped Prometheus rules load, and every metric the dashboard and the alerts use exists in /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.configs import ECHO_MODEL
from tests.support.gateway import ROOT, in_process_gateway

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "lsd-dashboard.json"
_METRIC = re.compile(r"\blsd_[a-z_]+\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `apt-get install -y prometheus` (.ci/run installs it)")
    return path


def test_alert_rules_and_scrape_config_load() -> None:
    rules = subprocess.run(
        [promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml")], capture_output=True, text=True, check=False
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(
        [promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert config.returncode == 0, config.stdout + config.stderr


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    return exprs


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each panel's query, Grafana's variables filled in, parses as PromQL: promtool checks it as a recording rule
    (a query with one parenthesis too many left every latency panel showing an error)."""
    values = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}
    rules = []
    for i, expr in enumerate(dashboard_expressions()):
        if expr.startswith("label_values("):  # Grafana's own function (the instance variable), not PromQL
            continue
        for name, value in values.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"a Grafana variable this test does not fill in: {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


async def test_every_metric_used_exists(database_url: str) -> None:
    async with in_process_gateway(ECHO_MODEL, database_url) as base_url, httpx.AsyncClient() as http:
        text = (await http.get(f"{base_url}/metrics")).text
    exposed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            exposed.add(name)
            if kind == "histogram":
                exposed.update(name + suffix for suffix in _HISTOGRAM_SUFFIXES)
            if kind == "counter":
                exposed.add(name + "_total")
    used = {
        "dashboard": {m for e in dashboard_expressions() for m in _METRIC.findall(e)},
        "alerts": set(_METRIC.findall((PROMETHEUS / "alerts.yml").read_text())),
    }
    assert len(used["dashboard"]) > 20 and len(used["alerts"]) >= 6
    for source, names in used.items():
        assert names - exposed == set(), f"{source} uses metrics /metrics does not have"
