"""The parsed configuration: frozen, typed objects built once from TOML by lsd.config.loader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lsd.types import InferenceParams

FunctionType = Literal["chat", "json"]


@dataclass(frozen=True, slots=True)
class BatchWritesConfig:
    enabled: bool = True
    flush_interval_ms: int = 100
    max_rows: int = 1000


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    enabled: bool = True
    async_writes: bool = True
    batch_writes: BatchWritesConfig = field(default_factory=BatchWritesConfig)
    max_queue_rows: int = 100_000


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    connect_timeout_s: float = 30.0
    disable_automatic_migrations: bool = False
    pool_min_size: int = 2
    pool_max_size: int = 20
    partitions_ahead_days: int = 7


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    bind_address: str = "127.0.0.1:3000"
    max_body_bytes: int = 10 * 1024 * 1024
    graceful_timeout_s: float = 30.0
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    non_streaming_total_ms: int | None = None
    streaming_ttft_ms: int | None = None
    streaming_total_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A provider entry; `options` holds the type-specific keys, parsed by the provider plugin itself."""

    name: str
    type: str
    options: Mapping[str, Any]
    key_path: str
    base_dir: Path
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    routing: tuple[str, ...]
    providers: Mapping[str, ProviderConfig]
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)


@dataclass(frozen=True, slots=True)
class RetryConfig:
    num_retries: int = 0
    max_delay_s: float = 10.0


@dataclass(frozen=True, slots=True)
class VariantConfig:
    name: str
    type: Literal["chat_completion"]
    model: str
    weight: float | None
    params: InferenceParams
    retries: RetryConfig = field(default_factory=RetryConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    name: str
    type: FunctionType
    variants: Mapping[str, VariantConfig]
    description: str | None = None
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewayConfig
    models: Mapping[str, ModelConfig]
    functions: Mapping[str, FunctionConfig]
    source_text: str = ""
    source_hash: str = ""
    path: Path | None = None
