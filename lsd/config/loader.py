"""Load TOML into a Config: parse once, reject unknown keys, report every error with its key path."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tomllib
from pathlib import Path

from lsd.config.auth import auth_from
from lsd.config.evaluations import evaluation_from
from lsd.config.functions import function_from, model_from, tool_from
from lsd.config.metrics import metric_from
from lsd.config.model import (
    BatchConfig,
    BatchWritesConfig,
    Config,
    DatabaseConfig,
    GatewayConfig,
    ObservabilityConfig,
)
from lsd.config.ratelimit import rate_limiting_from
from lsd.config.reader import ErrorSink, Table
from lsd.config.telemetry import metrics_from, otlp_traces_from
from lsd.errors import ConfigError

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def load(path: str | Path) -> Config:
    """Read and parse the config file; raise ConfigError listing every problem (file:line or key path)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read config file: {exc.strerror}"]) from exc
    return parse(text, base_dir=file.resolve().parent, path=file)


def parse(text: str, *, base_dir: Path, path: Path | None = None) -> Config:
    name = str(path) if path else "<config>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.search(str(exc))
        where = f"{name}:{match.group(1)}:{match.group(2)}" if match else name
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise ConfigError([f"{where}: invalid TOML: {message}"]) from exc

    sink = ErrorSink()
    root = Table(data, "", sink, base_dir)
    gateway = _gateway(root.table("gateway"))
    models = {name: model_from(name, t) for name, t in root.subtables("models")}
    embedding_models = {name: model_from(name, t, retries=True) for name, t in root.subtables("embedding_models")}
    tools = {name: tool_from(name, t) for name, t in root.subtables("tools")}
    functions = {name: function_from(name, t, models, tools) for name, t in root.subtables("functions")}
    metrics = {name: metric_from(name, t) for name, t in root.subtables("metrics")}
    evaluations = {name: evaluation_from(name, t, functions) for name, t in root.subtables("evaluations")}
    rate_limiting = rate_limiting_from(root.table("rate_limiting"), auth_enabled=gateway.auth.enabled)
    root.finish()
    if sink.errors:
        raise ConfigError(sink.errors)
    return Config(
        gateway=gateway,
        models=models,
        functions=functions,
        tools=tools,
        embedding_models=embedding_models,
        metrics=metrics,
        evaluations=evaluations,
        rate_limiting=rate_limiting,
        source_text=text,
        source_hash=hashlib.sha256(text.encode()).hexdigest(),
        path=path,
    )


def _gateway(t: Table) -> GatewayConfig:
    obs = t.table("observability")
    batch = obs.table("batch_writes")
    batch_writes = BatchWritesConfig(
        enabled=batch.bool("enabled", True),
        flush_interval_ms=batch.int("flush_interval_ms", 100, minimum=1),
        max_rows=batch.int("max_rows", 1000, minimum=1),
    )
    batch.finish()
    observability = ObservabilityConfig(
        enabled=obs.bool("enabled", True),
        async_writes=obs.bool("async_writes", True),
        batch_writes=batch_writes,
        max_queue_rows=obs.int("max_queue_rows", 100_000, minimum=1),
        # A relative spool_dir is relative to the config file's folder (like every path); the default to the cwd.
        spool_dir=obs.path_value("spool_dir") or Path.cwd() / ".lsd" / "spool",
        spool_max_bytes=obs.int("spool_max_bytes", 1024**3, minimum=0),
        shutdown_flush_timeout_s=obs.float("shutdown_flush_timeout_s", 10.0, minimum=0),
        retention_days=obs.int("retention_days", None, minimum=1),
        statistics_refresh_interval_s=obs.float("statistics_refresh_interval_s", 10.0, minimum=0),
    )
    obs.finish()
    db = t.table("database")
    database = DatabaseConfig(
        connect_timeout_s=db.float("connect_timeout_s", 30.0, minimum=0),
        disable_automatic_migrations=db.bool("disable_automatic_migrations", False),
        pool_min_size=db.int("pool_min_size", 2, minimum=1),
        pool_max_size=db.int("pool_max_size", 20, minimum=1),
        partitions_ahead_days=db.int("partitions_ahead_days", 7, minimum=1),
        prepared_statements=db.bool("prepared_statements", True),
        acquire_timeout_s=db.float("acquire_timeout_s", 2.0, minimum=0.01),
    )
    db.finish()
    batch_table = t.table("batch")
    batch_config = BatchConfig(poll_interval_s=batch_table.float("poll_interval_s", 30.0, minimum=0.1))
    batch_table.finish()
    bind = t.str("bind_address", "127.0.0.1:3000")
    if isinstance(bind, str) and ":" not in bind:
        t.error("bind_address", f"expected HOST:PORT, got {bind!r}")
    gateway = GatewayConfig(
        bind_address=bind,
        max_body_bytes=t.int("max_body_bytes", 10 * 1024 * 1024, minimum=1),
        graceful_timeout_s=t.float("graceful_timeout_s", 30.0, minimum=0),
        observability=observability,
        database=database,
        auth=auth_from(t.table("auth")),
        max_json_depth=t.int("max_json_depth", 64, minimum=1),
        max_header_count=t.int("max_header_count", 100, minimum=1),
        max_header_bytes=t.int("max_header_bytes", 16 * 1024, minimum=1024),
        request_timeout_s=t.float("request_timeout_s", 300.0, minimum=0),
        trusted_proxies=_networks(t, "trusted_proxies"),
        batch=batch_config,
        metrics=metrics_from(t.table("metrics")),  # telemetry: [gateway.metrics]
        otlp_traces=otlp_traces_from(t.table("export")),  # telemetry: [gateway.export.otlp.traces]
    )
    t.finish()
    return gateway


def _networks(t: Table, key: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for i, value in enumerate(t.str_list(key, ())):
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            t.error(f"{key}[{i}]", f"not an IP address or network: {value!r}")
    return tuple(out)
