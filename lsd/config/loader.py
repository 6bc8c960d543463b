"""Load TOML into a Config: parse once, reject unknown keys, report every error with its key path."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import orjson

from lsd.config.model import (
    BatchWritesConfig,
    Config,
    DatabaseConfig,
    FunctionConfig,
    GatewayConfig,
    ModelConfig,
    ObservabilityConfig,
    ProviderConfig,
    RetryConfig,
    TimeoutsConfig,
    VariantConfig,
)
from lsd.config.reader import ErrorSink, Table
from lsd.errors import ConfigError
from lsd.types import InferenceParams

JSON_MODES = ("off", "on", "strict", "tool")
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
    models = {name: _model(name, t) for name, t in root.subtables("models")}
    functions = {name: _function(name, t, models) for name, t in root.subtables("functions")}
    root.finish()
    if sink.errors:
        raise ConfigError(sink.errors)
    return Config(
        gateway=gateway,
        models=models,
        functions=functions,
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
    )
    obs.finish()
    db = t.table("database")
    database = DatabaseConfig(
        connect_timeout_s=db.float("connect_timeout_s", 30.0, minimum=0),
        disable_automatic_migrations=db.bool("disable_automatic_migrations", False),
        pool_min_size=db.int("pool_min_size", 2, minimum=1),
        pool_max_size=db.int("pool_max_size", 20, minimum=1),
        partitions_ahead_days=db.int("partitions_ahead_days", 7, minimum=1),
    )
    db.finish()
    bind = t.str("bind_address", "127.0.0.1:3000")
    if isinstance(bind, str) and ":" not in bind:
        t.error("bind_address", f"expected HOST:PORT, got {bind!r}")
    gateway = GatewayConfig(
        bind_address=bind,
        max_body_bytes=t.int("max_body_bytes", 10 * 1024 * 1024, minimum=1),
        graceful_timeout_s=t.float("graceful_timeout_s", 30.0, minimum=0),
        observability=observability,
        database=database,
    )
    t.finish()
    return gateway


def _timeouts(t: Table) -> TimeoutsConfig:
    non_streaming = t.table("non_streaming")
    streaming = t.table("streaming")
    result = TimeoutsConfig(
        non_streaming_total_ms=non_streaming.int("total_ms", None, minimum=1),
        streaming_ttft_ms=streaming.int("ttft_ms", None, minimum=1),
        streaming_total_ms=streaming.int("total_ms", None, minimum=1),
    )
    non_streaming.finish()
    streaming.finish()
    t.finish()
    return result


def _model(name: str, t: Table) -> ModelConfig:
    routing = t.str_list("routing", (), required=True)
    providers: dict[str, ProviderConfig] = {}
    for pname, p in t.subtables("providers"):
        ptype = p.str("type", "", required=True)
        timeouts = _timeouts(p.table("timeouts"))
        providers[pname] = ProviderConfig(
            name=pname, type=ptype, options=p.rest(), key_path=p.path, base_dir=p.base_dir, timeouts=timeouts
        )
    for entry in routing:
        if entry not in providers:
            t.error("routing", f"names provider {entry!r}, which is not in models.{name}.providers")
    if not routing and not t.sink.errors:
        t.error("routing", "must name at least one provider")
    model = ModelConfig(name=name, routing=routing, providers=providers, timeouts=_timeouts(t.table("timeouts")))
    t.finish()
    return model


def params_from(t: Table) -> InferenceParams:
    """Sampling parameters as they appear in a variant table (and in request overrides)."""
    return InferenceParams(
        temperature=t.float("temperature"),
        max_tokens=t.int("max_tokens", minimum=1),
        top_p=t.float("top_p"),
        seed=t.int("seed"),
        presence_penalty=t.float("presence_penalty"),
        frequency_penalty=t.float("frequency_penalty"),
        stop_sequences=t.str_list("stop_sequences"),
        json_mode=t.choice("json_mode", JSON_MODES),
    )


def _variant(name: str, t: Table, ftype: str, models: dict[str, ModelConfig]) -> VariantConfig:
    vtype = t.choice("type", ("chat_completion",), required=True)
    model = t.str("model", "", required=True)
    if model and model not in models and "::" not in model:
        t.error("model", f"unknown model {model!r}: define [models.{model}] or use a shorthand like 'dummy::echo'")
    retries_t = t.table("retries")
    retries = RetryConfig(
        num_retries=retries_t.int("num_retries", 0, minimum=0),
        max_delay_s=retries_t.float("max_delay_s", 10.0, minimum=0),
    )
    retries_t.finish()
    params = params_from(t)
    if ftype == "json" and params.json_mode is None:
        t.error("json_mode", "required for variants of json functions")
    if ftype == "chat" and params.json_mode is not None:
        t.error("json_mode", "only allowed for variants of json functions")
    variant = VariantConfig(
        name=name,
        type=vtype,
        model=model,
        weight=t.float("weight", None, minimum=0),
        params=params,
        retries=retries,
        timeouts=_timeouts(t.table("timeouts")),
    )
    t.finish()
    return variant


def _function(name: str, t: Table, models: dict[str, ModelConfig]) -> FunctionConfig:
    ftype = t.choice("type", ("chat", "json"), "chat", required=True)
    variants = {vname: _variant(vname, v, ftype, models) for vname, v in t.subtables("variants")}
    if not variants:
        t.error("variants", "a function needs at least one variant")
    output_schema: dict[str, Any] | None = None
    if t.has("output_schema"):
        if ftype != "json":
            t.error("output_schema", "only allowed for json functions")
        output_schema = _json_file(t, "output_schema")
    function = FunctionConfig(
        name=name,
        type=ftype,
        variants=variants,
        description=t.str("description"),
        output_schema=output_schema,
    )
    t.finish()
    return function


def _json_file(t: Table, key: str) -> dict[str, Any] | None:

    path = t.path_value(key)
    if path is None:
        return None
    try:
        value = orjson.loads(path.read_bytes())
    except OSError as exc:
        t.error(key, f"cannot read {path}: {exc.strerror}")
        return None
    except orjson.JSONDecodeError as exc:
        t.error(key, f"{path} is not valid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        t.error(key, f"{path} must hold a JSON object")
        return None
    return value
