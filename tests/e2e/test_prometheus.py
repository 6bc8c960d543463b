"""A real Prometheus scrapes a real `lsd serve`; `--workers 2` sums every worker's counts exactly."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lsd.store.local import free_port
from tests.support.configs import echo_chat
from tests.support.gateway import ROOT, Daemon, Daemons

CONFIG = f"""
[gateway.observability]
statistics_refresh_interval_s = 1
{echo_chat()}
"""

MESSAGE = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `apt-get install -y prometheus` (.ci/run installs it)")
    return path


@pytest.fixture
def daemon_factory(database_url: str, daemons: Daemons) -> Any:
    def start(*args: str, env: dict[str, str] | None = None) -> Daemon:
        return daemons.start(CONFIG, database_url, args=args, env=env)

    return start


@contextlib.contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """Prometheus on a free port scraping `target` every 200 ms, with LSD's alert rules loaded."""
    binary = require("prometheus")
    port = free_port()
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\n"
        "rule_files: [alerts.yml]\n"
        f"scrape_configs:\n  - job_name: lsd\n    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def query(base_url: str, promql: str) -> float | None:
    """An instant query's single value, or None while it has no result (or Prometheus is not up yet)."""
    with contextlib.suppress(httpx.HTTPError):
        r = httpx.get(f"{base_url}/api/v1/query", params={"query": promql}, timeout=5)
        if r.status_code != 200:  # 503 "Service Unavailable" until its storage is ready
            return None
        result = r.json()["data"]["result"]
        if result:
            return float(result[0]["value"][1])
    return None


def wait_for_value(base_url: str, promql: str, expected: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = query(base_url, promql)
        if last == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{promql} = {last}, expected {expected}")


def scrape(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(f"{base_url}/metrics", timeout=10)
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


@pytest.mark.e2e
def test_prometheus_reads_back_the_inference_counter(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory()
    with prometheus(tmp_path, f"127.0.0.1:{daemon.port}") as prom, httpx.Client(base_url=daemon.base_url) as http:
        for _ in range(7):
            assert http.post("/inference", json=MESSAGE).status_code == 200
        wait_for_value(prom, 'up{job="lsd"}', 1)
        wait_for_value(prom, 'sum(lsd_inferences_total{function="chat",outcome="ok"})', 7)
        wait_for_value(prom, 'sum(lsd_http_requests_total{route="/inference",status="200"})', 7)
        wait_for_value(prom, 'sum(lsd_writer_rows_written_total{table="chat_inferences"})', 7)
        wait_for_value(prom, "sum(lsd_gateway_overhead_seconds_count)", 7)
        # the statistics job runs every second: its duration histogram fills
        wait_for_value(prom, "sum(lsd_statistics_refresh_duration_seconds_count) > bool 0", 1)
        # Prometheus loaded every alert rule, and none fires on a healthy gateway
        rules = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
        names = {rule["name"] for group in rules for rule in group["rules"]}
        assert {"LsdWriterDroppingRows", "LsdWriterSpooling", "LsdGatewayOverheadP99High"} <= names
        alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        assert [a for a in alerts if a["state"] == "firing"] == []


@pytest.mark.e2e
def test_two_workers_sum_exactly(daemon_factory: Any, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus-multiproc"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by a previous run")  # must be cleared at start
    daemon = daemon_factory("--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    served = 0
    for _ in range(40):
        # a new connection each time, so that both workers take requests
        r = httpx.post(f"{daemon.base_url}/inference", json=MESSAGE, headers={"connection": "close"}, timeout=10)
        assert r.status_code == 200
        served += 1
    pids = {p.name.split("_")[-1] for p in metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2, f"expected both workers to record, got files for {pids}"

    labels = frozenset(
        {
            "function": "chat",
            "variant": "a",
            "model": "echo",
            "provider": "dummy",
            "outcome": "ok",
            "stream": "false",
        }.items()
    )
    http_labels = frozenset({"route": "/inference", "method": "POST", "status": "200"}.items())
    time.sleep(1.5)  # each worker flushes its pending counts every second (and before answering a scrape)
    for _ in range(5):  # whichever worker answers the scrape, the sums are the same and exact
        samples = scrape(daemon.base_url)
        assert samples[("lsd_inferences_total", labels)] == served
        assert samples[("lsd_inference_duration_seconds_count", labels)] == served
        assert samples[("lsd_http_requests_total", http_labels)] == served
        assert samples[("lsd_db_pool_max_connections", frozenset())] == 2 * 20  # live sum of both workers' pools

    deadline = time.monotonic() + 15
    written = 0.0
    while time.monotonic() < deadline and written != served:
        written = scrape(daemon.base_url).get(
            ("lsd_writer_rows_written_total", frozenset({"table": "chat_inferences"}.items())), 0.0
        )
        time.sleep(0.2)
    assert written == served
    assert daemon.terminate() == 0
    assert metrics_dir.exists()  # the operator's folder is kept


@pytest.mark.e2e
def test_one_process_with_the_operators_folder_counts_only_its_own_run(daemon_factory: Any, tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set and one process, a restart starts from zero (a previous run's files were
    summed with the new ones: counters doubled, gauges such as the pool size too)."""
    metrics_dir = tmp_path / "prometheus-multiproc"
    http_labels = frozenset({"route": "/inference", "method": "POST", "status": "200"}.items())
    for _ in range(2):
        daemon = daemon_factory(env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
        for _ in range(3):
            assert httpx.post(f"{daemon.base_url}/inference", json=MESSAGE, timeout=10).status_code == 200
        time.sleep(1.5)  # the pending counts are flushed every second
        samples = scrape(daemon.base_url)
        assert samples[("lsd_http_requests_total", http_labels)] == 3
        assert samples[("lsd_db_pool_max_connections", frozenset())] == 20
        assert daemon.terminate() == 0


@pytest.mark.e2e
def test_workers_use_a_temporary_folder_removed_at_exit(daemon_factory: Any, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    daemon = daemon_factory("--workers", "2", env={"TMPDIR": str(tmp)})
    assert httpx.post(f"{daemon.base_url}/inference", json=MESSAGE, timeout=10).status_code == 200
    # The scrape may reach the other worker, which sees the first one's counts after its next flush (<= 1 s).
    deadline = time.monotonic() + 10
    total = 0.0
    while time.monotonic() < deadline and total != 1:
        samples = scrape(daemon.base_url)
        total = sum(v for (name, _), v in samples.items() if name == "lsd_inferences_total")
        time.sleep(0.2)
    assert total == 1
    assert len(list(tmp.glob("lsd-metrics-*"))) == 1
    assert daemon.terminate() == 0
    assert list(tmp.glob("lsd-metrics-*")) == []
