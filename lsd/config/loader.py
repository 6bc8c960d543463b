"""Load TOML into a Config: parse once, reject unknown keys, report every error with its key path."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

from lsd.config.auth import auth_from
from lsd.config.evaluations import evaluation_from
from lsd.config.files import SourceFile, Sources, expand, parse_toml, read
from lsd.config.functions import function_from, model_from, tool_from
from lsd.config.inbound import inbound_from
from lsd.config.metrics import metric_from
from lsd.config.model import (
    BatchConfig,
    BatchWritesConfig,
    Config,
    DatabaseConfig,
    FunctionConfig,
    GatewayConfig,
    ObservabilityConfig,
    TemplateFilesystemAccess,
    UiConfig,
)
from lsd.config.ratelimit import rate_limiting_from
from lsd.config.reader import ErrorSink, Origins, Table
from lsd.config.telemetry import metrics_from, otlp_traces_from
from lsd.config.tensorzero import accepted_tables
from lsd.config.variant_types import check_embedding_models
from lsd.errors import ConfigError


def load(path: str | Path) -> Config:
    """Read and parse one config file; raise ConfigError listing every problem (file:line or key path)."""
    return load_many([str(path)])


def load_many(patterns: Sequence[str]) -> Config:
    """Read the files the paths and globs name (TensorZero's `--config-file 'config/*.toml'`), merge them (a key
    defined by two files is an error naming both) and parse the result; relative paths in a file resolve against
    that file's folder. The snapshot (`source_text`, `source_hash`) covers every file."""
    sources = read(expand(patterns))
    return _build(sources, sources.files[0].path.resolve().parent)


def parse(text: str, *, base_dir: Path, path: Path | None = None) -> Config:
    """Parse one config document (paths relative to `base_dir`)."""
    data = parse_toml(text, str(path) if path else "<config>")
    return _build(Sources(data, Origins(), (SourceFile(path or Path("<config>"), text),)), base_dir)


def _build(sources: Sources, base_dir: Path) -> Config:
    sink = ErrorSink()
    root = Table(sources.data, "", sink, base_dir, sources.origins)
    gateway = _gateway(root.table("gateway"), root.table("postgres"))
    models = {name: model_from(name, t) for name, t in root.subtables("models")}
    embedding_models = {name: model_from(name, t, retries=True) for name, t in root.subtables("embedding_models")}
    tools = {name: tool_from(name, t) for name, t in root.subtables("tools")}
    metrics = {name: metric_from(name, t) for name, t in root.subtables("metrics")}
    functions = {name: function_from(name, t, models, tools, metrics) for name, t in root.subtables("functions")}
    check_embedding_models(sink, functions, embedding_models)
    judges: dict[str, FunctionConfig] = {}  # TensorZero-form llm_judges' inline variants, as functions
    evaluations = {
        name: evaluation_from(name, t, functions, models, judges) for name, t in root.subtables("evaluations")
    }
    functions = {**functions, **judges}
    rate_limiting = rate_limiting_from(root.table("rate_limiting"), auth_enabled=gateway.auth.enabled)
    inbound = inbound_from(root.table("inbound"), models, functions, embedding_models)
    accepted = accepted_tables(root)
    root.finish()
    if sink.errors:
        raise ConfigError(sink.errors)
    paths = tuple(f.path for f in sources.files)
    return Config(
        gateway=gateway,
        models=models,
        functions=functions,
        tools=tools,
        embedding_models=embedding_models,
        metrics=metrics,
        evaluations=evaluations,
        rate_limiting=rate_limiting,
        source_text=sources.text,
        source_hash=sources.hash,
        path=paths[0] if paths and paths[0] != Path("<config>") else None,
        paths=tuple(p for p in paths if p != Path("<config>")),
        accepted=accepted,
        inbound=inbound,
    )


def _gateway(t: Table, postgres: Table) -> GatewayConfig:
    obs = t.table("observability")
    batch = obs.table("batch_writes")
    batch_writes = BatchWritesConfig(
        enabled=batch.bool("enabled", True),
        flush_interval_ms=batch.int("flush_interval_ms", 100, minimum=1),
        max_rows=batch.int("max_rows", 1000, minimum=1),
    )
    # TensorZero's: LSD has one queue for all rows (bounded by observability.max_queue_rows).
    batch.int("max_rows_postgres", None, minimum=1)
    batch.int("write_queue_capacity", None, minimum=1)
    batch.bool("__force_allow_embedded_batch_writes", False)
    batch.finish()
    obs.choice("backend", ("auto", "clickhouse", "postgres"))  # TensorZero's: LSD writes PostgreSQL only
    legacy_no_migrations = obs.bool("disable_automatic_migrations", None)  # TensorZero's older place for it
    # TensorZero's gateway.disable_observability (its provider guides use it): [gateway.observability] enabled = false
    disabled = t.bool("disable_observability", False)
    enabled = obs.bool("enabled", not disabled)
    if disabled and enabled:
        obs.error("enabled", "contradicts gateway.disable_observability = true: keep one of the two")
    observability = ObservabilityConfig(
        enabled=enabled,
        async_writes=obs.bool("async_writes", True),
        batch_writes=batch_writes,
        max_queue_rows=obs.int("max_queue_rows", 100_000, minimum=1),
        max_queue_bytes=obs.int("max_queue_bytes", 256 * 1024**2, minimum=1),
        # A relative spool_dir is relative to the config file's folder (like every path); the default to the cwd.
        spool_dir=obs.path_value("spool_dir") or Path.cwd() / ".lsd" / "spool",
        spool_max_bytes=obs.int("spool_max_bytes", 1024**3, minimum=0),
        shutdown_flush_timeout_s=obs.float("shutdown_flush_timeout_s", 10.0, minimum=0),
        durability=obs.choice("durability", ("queue", "journal"), "queue"),
        retention_days=obs.int("retention_days", None, minimum=1),
        statistics_refresh_interval_s=obs.float("statistics_refresh_interval_s", 10.0, minimum=0),
        input_strings_once=obs.bool("input_strings_once", True),
    )
    obs.finish()
    db = t.table("database")
    # TensorZero's [postgres]: the URL comes from the environment in both; enabled = false cannot work here.
    if postgres.bool("enabled", None) is False:
        postgres.error("enabled", "LSD stores everything in PostgreSQL: it cannot run with PostgreSQL disabled")
    pool_size = postgres.int("connection_pool_size", 20, minimum=1)
    postgres.finish()
    database = DatabaseConfig(
        connect_timeout_s=db.float("connect_timeout_s", 30.0, minimum=0),
        disable_automatic_migrations=db.bool("disable_automatic_migrations", legacy_no_migrations or False),
        pool_min_size=db.int("pool_min_size", 2, minimum=1),
        pool_max_size=db.int("pool_max_size", pool_size, minimum=1),
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
    auth = auth_from(t.table("auth"))
    gateway = GatewayConfig(
        bind_address=bind,
        max_body_bytes=t.int("max_body_bytes", 10 * 1024 * 1024, minimum=1),
        graceful_timeout_s=t.float("graceful_timeout_s", 30.0, minimum=0),
        http_server=t.choice("http_server", ("uvicorn", "hypercorn"), "uvicorn"),
        observability=observability,
        database=database,
        auth=auth,
        max_json_depth=t.int("max_json_depth", 64, minimum=1),
        max_header_count=t.int("max_header_count", 100, minimum=1),
        max_header_bytes=t.int("max_header_bytes", 16 * 1024, minimum=1024),
        request_timeout_s=t.float("request_timeout_s", 300.0, minimum=0),
        trusted_proxies=_networks(t, "trusted_proxies"),
        cors_allowed_origins=_origins(t, "cors_allowed_origins"),
        batch=batch_config,
        metrics=metrics_from(t.table("metrics")),  # telemetry: [gateway.metrics]
        otlp_traces=otlp_traces_from(t.table("export")),  # telemetry: [gateway.export.otlp.traces]
        template_filesystem_access=_template_filesystem_access(t.table("template_filesystem_access")),
        unstable_error_json=t.bool("unstable_error_json", False),
        debug=t.bool("debug", False),
        unstable_disable_feedback_target_validation=t.bool("unstable_disable_feedback_target_validation", False),
        disable_pseudonymous_usage_analytics=t.bool("disable_pseudonymous_usage_analytics", False),
        fetch_and_encode_input_files_before_inference=t.bool("fetch_and_encode_input_files_before_inference", False),
        global_outbound_http_timeout_ms=t.int("global_outbound_http_timeout_ms", 900_000, minimum=1),
        ui=_ui(t.table("ui")),
        allow_dynamic_variants=t.bool("allow_dynamic_variants", not auth.enabled),
    )
    base_path = t.str("base_path", "/")
    if isinstance(base_path, str) and base_path.strip("/"):
        t.error("base_path", f"LSD serves its routes at the root only, got {base_path!r}: add the prefix in a proxy")
    relay = t.table("relay")
    if relay.str("gateway_url") is not None:
        relay.error("gateway_url", "LSD has no relay mode: it calls the providers itself")
    relay.raw("api_key_location")
    relay.finish()
    _cache(t.table("cache"))
    t.finish()
    return gateway


def _ui(t: Table) -> UiConfig:
    """`[gateway.ui]`: the console (docs/console.md)."""
    ui = UiConfig(enabled=t.bool("enabled", True), session_ttl_s=t.int("session_ttl_s", 43_200, minimum=60))
    t.finish()
    return ui


def _template_filesystem_access(t: Table) -> TemplateFilesystemAccess:
    """TensorZero's `{% include %}` root: `base_path` (relative to the file naming it); `enabled = true` without
    it means that file's folder; `enabled = false` turns it off."""
    enabled = t.bool("enabled", None)
    base = t.path_value("base_path")
    if enabled and base is None:
        base = t.base_dir
    if base is not None and not base.is_dir():
        t.error("base_path", f"{base} is not a folder")
    t.finish()
    return TemplateFilesystemAccess(base if enabled is not False else None)


def _cache(t: Table) -> None:
    """TensorZero's `[gateway.cache]` (ClickHouse or Valkey): LSD's cache is PostgreSQL, asked per request."""
    t.bool("enabled", None)
    t.choice("backend", ("auto", "clickhouse", "valkey"))
    valkey = t.table("valkey")
    valkey.int("ttl_s", 86400, minimum=1)
    valkey.finish()
    t.finish()


def _origins(t: Table, key: str) -> tuple[str, ...]:
    """Web origins (`scheme://host[:port]`, as a browser sends `Origin`), or "*"."""
    origins = t.str_list(key) or ()
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
            t.error(key, f'expected origins such as https://chat.example.com (no path), or "*"; got {origin!r}')
    return tuple(origins)


def _networks(t: Table, key: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for i, value in enumerate(t.str_list(key, ())):
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            t.error(f"{key}[{i}]", f"not an IP address or network: {value!r}")
    return tuple(out)
